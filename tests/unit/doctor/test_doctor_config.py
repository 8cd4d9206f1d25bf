"""config.*: real .env files with real modes; the safe repairs run for real."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from doctor_helpers import STRONG_KEY, make_ctx, write_env

from montero_ops.services.doctor.config import check_config
from montero_ops.services.envfile import parse_env


def _by_id(root: Path, production: bool = False) -> dict:
    return {f.id: f for f in check_config(make_ctx(root, production=production))}


GOOD = f"SECRET_KEY={STRONG_KEY}\nFLASK_ENV=production\nDATABASE_URL=sqlite:////app/data/mi_sistema.db\nMAIL_USERNAME=\nMAIL_PASSWORD=\n"


def test_good_env_passes_everything(root: Path) -> None:
    write_env(root, GOOD)
    found = _by_id(root)
    assert {k: f.status.value for k, f in found.items()} == {
        "config.env_file": "pass",
        "config.env_mode": "pass",
        "config.required": "pass",
        "config.secret_key": "pass",
        "config.flask_env": "pass",
        "config.mail": "pass",
    }


def test_missing_env_fails_and_repair_creates_it(root: Path) -> None:
    found = _by_id(root)
    finding = found["config.env_file"]
    assert finding.status.value == "fail" and finding.fix == "montero env init"
    assert found["config.secret_key"].status.value == "skip"
    assert finding.repair is not None and finding.repair.safe
    finding.repair.apply()
    env = root / ".env"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    key = parse_env(env.read_text())["SECRET_KEY"]
    assert len(key) == 64 and key != "change-me"
    assert _by_id(root)["config.secret_key"].status.value == "pass"


def test_world_readable_env_warns_and_repair_chmods(root: Path) -> None:
    env = write_env(root, GOOD, mode=0o644)
    finding = _by_id(root)["config.env_mode"]
    assert finding.status.value == "warn" and "0644" in finding.message
    assert finding.fix == f"chmod 600 {env}"
    assert finding.repair is not None and finding.repair.safe
    finding.repair.apply()
    assert stat.S_IMODE(env.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("key", "text"),
    [
        ("k3y9z", "SECRET_KEY is shorter than 32 characters"),
        ("change-me", "SECRET_KEY is a documented placeholder"),
        ("change-me-change-me-change-me-change-me", "placeholder"),
        ("development-key-0123456789abcdef0123456789", "SECRET_KEY is a documented placeholder"),
        ("", "SECRET_KEY is not set"),
    ],
)
def test_weak_secret_key_fails(root: Path, key: str, text: str) -> None:
    """The app's own rule (backend settings.py, loaded by path): doctor and the app agree."""
    settings = root / "backend" / "montero_api" / "settings.py"
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text((Path(__file__).parents[3] / "backend" / "montero_api" / "settings.py").read_text())
    write_env(root, GOOD.replace(STRONG_KEY, key))
    finding = _by_id(root)["config.secret_key"]
    assert finding.status.value == "fail" and text in finding.message
    assert "secrets.token_hex(32)" in finding.fix
    assert finding.repair is not None and not finding.repair.safe  # a new key signs everyone out: ask first
    if key:
        assert key not in finding.message


def test_secret_key_repair_writes_a_strong_key(root: Path) -> None:
    env = write_env(root, GOOD.replace(STRONG_KEY, "short"))
    finding = _by_id(root)["config.secret_key"]
    finding.repair.apply()
    assert len(parse_env(env.read_text())["SECRET_KEY"]) == 64


def test_required_missing_fails_and_example_gap_is_noted(root: Path) -> None:
    write_env(root, "FLASK_ENV=production\n")
    finding = _by_id(root)["config.required"]
    assert finding.status.value == "fail" and "SECRET_KEY" in finding.message
    write_env(root, f"SECRET_KEY={STRONG_KEY}\n")
    finding = _by_id(root)["config.required"]
    assert finding.status.value == "pass" and "defaults apply" in finding.message


def test_a_value_compose_cannot_read_fails_without_printing_it(root: Path) -> None:
    """Compose refuses such a .env ("Invalid template", quoting the value): doctor said 0 failed."""
    write_env(root, GOOD + "MAIL_PASSWORD=${UNCLOSED-hunter2-mail\n")
    finding = _by_id(root)["config.required"]
    assert finding.status.value == "fail" and "MAIL_PASSWORD" in finding.message
    assert "hunter2" not in finding.message + finding.fix


def test_variable_set_twice_warns(root: Path) -> None:
    write_env(root, GOOD + f"SECRET_KEY={STRONG_KEY[::-1]}\n")
    finding = _by_id(root)["config.required"]
    assert finding.status.value == "warn" and "SECRET_KEY" in finding.message and "last wins" in finding.message


@pytest.mark.parametrize(
    ("extra", "production", "status"),
    [
        ("FLASK_ENV=development\n", False, "warn"),
        ("FLASK_ENV=development\n", True, "fail"),
        ("FLASK_DEBUG=1\n", False, "warn"),
    ],
)
def test_flask_env(root: Path, extra: str, production: bool, status: str) -> None:
    write_env(root, GOOD + extra)
    assert _by_id(root, production)["config.flask_env"].status.value == status


def test_mail_incomplete_warns(root: Path) -> None:
    write_env(root, GOOD + "MAIL_USERNAME=ops@example.com\n")
    finding = _by_id(root)["config.mail"]
    assert finding.status.value == "warn"
    assert "MAIL_DEFAULT_SENDER" in finding.message and "MAIL_PASSWORD" in finding.message


def test_mail_complete_passes(root: Path) -> None:
    write_env(
        root,
        GOOD + "MAIL_USERNAME=ops@example.com\nMAIL_PASSWORD=s3cret-app-pass\nMAIL_DEFAULT_SENDER=ops@example.com\n",
    )
    assert _by_id(root)["config.mail"].status.value == "pass"
