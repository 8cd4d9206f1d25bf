"""The shared redaction rules (also used by backups and doctor)."""

from __future__ import annotations

from montero_ops.services.redact import (
    MASK,
    is_secret,
    redact_compose_config,
    redact_env,
    redact_env_list,
    redact_text,
    redact_url,
)


def test_secret_names() -> None:
    """Only declared-clear names are clear: a name the pattern list never thought of is secret."""
    for name in ("SECRET_KEY", "MAIL_PASSWORD", "API_TOKEN", "POSTGRES_PASSWORD", "aws_secret_access_key",
                 "PRIVATE_PEM", "SMTP_PASS", "DB_PASS", "API_AUTH", "REDIS_PASSWORD", "MONTERO_OFFSITE_REPOSITORY",
                 "SOMETHING_NEW"):
        assert is_secret(name), name
    for name in ("FLASK_ENV", "DATABASE_URL", "MAIL_USERNAME", "TZ", "PATH", "SECRET_KEY_FILE", "MONTERO_APP_IMAGE"):
        assert not is_secret(name), name


def test_declared_clear_and_learnt_values() -> None:
    from montero_ops.services import redact

    redact.learn_env({"MONTERO_CLEAR_ENV": "SHOP_COLOUR, other", "SHOP_COLOUR": "blue", "API_AUTH": "Basic-abc123",
                      "SHORT": "x1", "TZ": "America/Bogota"})
    assert not is_secret("SHOP_COLOUR") and not is_secret("OTHER") and is_secret("API_AUTH")
    text = "auth Basic-abc123 failed; colour blue; x1; tz America/Bogota; Basic-abc1234"
    assert redact.mask_values(text) == f"auth {MASK} failed; colour blue; x1; tz America/Bogota; Basic-abc1234"


def test_multi_line_values_are_masked_line_by_line_too() -> None:
    from montero_ops.services import redact

    pem = "-----BEGIN KEY-----\nAAAABBBBCCCC\nDDDDEEEE\n-----END KEY-----"
    yaml_block = "    JWT: |\n      -----BEGIN KEY-----\n      AAAABBBBCCCC\n      DDDDEEEE\n      -----END KEY-----\n"
    masked = redact.mask_values(yaml_block, [pem])
    assert "AAAABBBBCCCC" not in masked and "DDDDEEEE" not in masked and "BEGIN" not in masked


def test_yaml_rendering() -> None:
    from montero_ops.services.redact import to_yaml

    doc = {"name": "shop", "services": {"app": {"command": ["a b", "--x"], "environment": {"A": "yes", "B": "1"},
                                                 "ports": [{"target": 5000, "published": "5000"}], "x": {}}}}
    assert to_yaml(doc) == (
        "name: shop\nservices:\n  app:\n    command:\n      - a b\n      - --x\n    environment:\n"
        '      A: "yes"\n      B: "1"\n    ports:\n      - target: 5000\n        published: "5000"\n    x: {}\n'
    )


def test_urls_keep_the_user_hide_the_password() -> None:
    assert redact_url("postgresql+psycopg://montero:s3cr3t@db:5432/montero") == \
        f"postgresql+psycopg://montero:{MASK}@db:5432/montero"
    assert redact_url("redis://:pw@redis:6379/0") == f"redis://:{MASK}@redis:6379/0"
    assert redact_url("sqlite:////app/data/mi_sistema.db") == "sqlite:////app/data/mi_sistema.db"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_env_forms() -> None:
    assert redact_env({"SECRET_KEY": "x", "EMPTY_TOKEN": "", "TZ": "1"}) == {"SECRET_KEY": MASK, "EMPTY_TOKEN": "", "TZ": "1"}
    assert redact_env_list(["SECRET_KEY=x=y", "NOVALUE", "TZ=1"]) == [f"SECRET_KEY={MASK}", "NOVALUE", "TZ=1"]


def test_compose_config_list_environment() -> None:
    doc = {"services": {"app": {"environment": ["SECRET_KEY=x", "TZ=b"], "image": "i"}}}
    assert redact_compose_config(doc) == {"services": {"app": {"environment": [f"SECRET_KEY={MASK}", "TZ=b"], "image": "i"}}}


def test_text() -> None:
    text = "SECRET_KEY=abc\n  - MAIL_PASSWORD: x\nurl: postgresql://u:p@h/d\nEMPTY_TOKEN=\n"
    assert redact_text(text) == f"SECRET_KEY={MASK}\n  - MAIL_PASSWORD: {MASK}\nurl: postgresql://u:{MASK}@h/d\nEMPTY_TOKEN=\n"
