"""Settings: the documented names and defaults, and production's refusal of a weak SECRET_KEY."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from api_helpers import BACKEND, free_port
from montero_api import create_app
from montero_api.settings import GENERATE_HINT, PLACEHOLDER_SECRETS, ConfigError, Settings, secret_key_problem


def test_documented_names_and_defaults() -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert defaults["FLASK_ENV"] == "production"
    assert defaults["DATABASE_URL"] == "sqlite:////app/data/mi_sistema.db"
    assert defaults["MAIL_SERVER"] == "smtp.gmail.com"
    assert defaults["MAIL_PORT"] == 587
    assert defaults["MAIL_USE_TLS"] is True
    assert defaults["MAIL_USERNAME"] is None and defaults["MAIL_PASSWORD"] is None
    assert defaults["MAIL_DEFAULT_SENDER"] is None
    assert defaults["LOG_LEVEL"] == "INFO"
    assert defaults["TZ"] == "America/Bogota"
    assert defaults["RATELIMIT_STORAGE_URL"] is None
    assert defaults["SECRET_KEY"] is None


def test_environment_is_parsed_and_typed() -> None:
    env = {"FLASK_ENV": "development", "MAIL_PORT": "2525", "MAIL_USE_TLS": "false", "RATELIMIT_STORAGE_URL": ""}
    settings = Settings.from_env(env)
    assert settings.MAIL_PORT == 2525 and settings.MAIL_USE_TLS is False
    assert settings.RATELIMIT_STORAGE_URL is None  # compose's `${VAR:-}` means unset


def test_bad_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="MAIL_PORT"):
        Settings.from_env({"FLASK_ENV": "development", "MAIL_PORT": "many"})
    with pytest.raises(ConfigError, match="TZ"):
        Settings.from_env({"FLASK_ENV": "development", "TZ": "Mars/Olympus"})


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        (None, "not set"),
        ("", "not set"),
        ("short-but-real-1234", "shorter than 32"),
        ("change-me", "placeholder"),
        ("your-secret-key-here", "placeholder"),
        ("change-me-to-a-long-random-value-0123456789abcdef", "placeholder"),
    ],
)
def test_production_refuses_weak_secret_key(secret: str | None, reason: str) -> None:
    env = {"FLASK_ENV": "production"} | ({"SECRET_KEY": secret} if secret is not None else {})
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert reason in message
    assert GENERATE_HINT in message
    assert "\n" not in message


def test_placeholder_list_is_exposed_and_strong_keys_pass() -> None:
    assert "change-me" in PLACEHOLDER_SECRETS and "your-secret-key-here" in PLACEHOLDER_SECRETS
    assert secret_key_problem(os.urandom(32).hex()) is None
    Settings.from_env({"FLASK_ENV": "production", "SECRET_KEY": os.urandom(32).hex()})


def test_development_runs_without_a_key(tmp_path: Path) -> None:
    Settings.from_env({"FLASK_ENV": "development"})


def test_create_app_refuses_in_production(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="refusing to start in production"):
        create_app({"FLASK_ENV": "production", "SECRET_KEY": "change-me", "LOG_DIR": str(tmp_path)})


def test_gunicorn_refuses_to_start_with_a_weak_key(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FLASK_ENV": "production",
        "SECRET_KEY": "your-secret-key-here",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "LOG_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{free_port()}", "wsgi:app"],
        cwd=BACKEND,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    expected = (
        "montero_api: configuration error: SECRET_KEY is a documented placeholder; "
        f"refusing to start in production. Generate one with: {GENERATE_HINT}"
    )
    assert lines == [expected]
    assert "Traceback" not in result.stderr


def test_flask_cli_refuses_too(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"} | {
        "LOG_DIR": str(tmp_path),
        "FLASK_ENV": "production",
        "FLASK_SKIP_DOTENV": "1",
    }
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "wsgi",
            "create-admin",
            "--email",
            "a@b.co",
            "--password",
            "long-enough-1",
        ],
        cwd=BACKEND,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set; refusing to start in production" in result.stderr
    assert "Traceback" not in result.stderr


def test_redacted_settings_hide_secrets() -> None:
    settings = Settings.from_env(
        {
            "FLASK_ENV": "development",
            "SECRET_KEY": "k" * 40,
            "MAIL_PASSWORD": "hunter2",
            "DATABASE_URL": "postgresql://montero:pw@db:5432/montero",
        }
    )
    shown = settings.redacted()
    assert shown["SECRET_KEY"] == "***" and shown["MAIL_PASSWORD"] == "***"
    assert shown["DATABASE_URL"] == "postgresql://montero:***@db:5432/montero"
