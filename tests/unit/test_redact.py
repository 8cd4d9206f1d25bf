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
    for name in ("SECRET_KEY", "MAIL_PASSWORD", "API_TOKEN", "POSTGRES_PASSWORD", "aws_secret_access_key", "PRIVATE_PEM"):
        assert is_secret(name), name
    for name in ("FLASK_ENV", "DATABASE_URL", "MAIL_USERNAME", "TZ", "KEY_PREFIX"):
        assert not is_secret(name), name


def test_urls_keep_the_user_hide_the_password() -> None:
    assert redact_url("postgresql+psycopg://montero:s3cr3t@db:5432/montero") == \
        f"postgresql+psycopg://montero:{MASK}@db:5432/montero"
    assert redact_url("redis://:pw@redis:6379/0") == f"redis://:{MASK}@redis:6379/0"
    assert redact_url("sqlite:////app/data/mi_sistema.db") == "sqlite:////app/data/mi_sistema.db"
    assert redact_url("redis://redis:6379/0") == "redis://redis:6379/0"


def test_env_forms() -> None:
    assert redact_env({"SECRET_KEY": "x", "EMPTY_TOKEN": "", "A": "1"}) == {"SECRET_KEY": MASK, "EMPTY_TOKEN": "", "A": "1"}
    assert redact_env_list(["SECRET_KEY=x=y", "NOVALUE", "A=1"]) == [f"SECRET_KEY={MASK}", "NOVALUE", "A=1"]


def test_compose_config_list_environment() -> None:
    doc = {"services": {"app": {"environment": ["SECRET_KEY=x", "A=b"], "image": "i"}}}
    assert redact_compose_config(doc) == {"services": {"app": {"environment": [f"SECRET_KEY={MASK}", "A=b"], "image": "i"}}}


def test_text() -> None:
    text = "SECRET_KEY=abc\n  - MAIL_PASSWORD: x\nurl: postgresql://u:p@h/d\nEMPTY_TOKEN=\n"
    assert redact_text(text) == f"SECRET_KEY={MASK}\n  - MAIL_PASSWORD: {MASK}\nurl: postgresql://u:{MASK}@h/d\nEMPTY_TOKEN=\n"
