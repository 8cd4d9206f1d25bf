"""Settings from files (issue 21 point 7): X_FILE names a file holding X, as Docker secrets are mounted.

On a swarm the secrets are files under /run/secrets and the service's environment carries only their
paths. Both X and X_FILE set, or a file that cannot be read, stops the app with one line that names
the variable and the path and never the value.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from api_helpers import BACKEND, free_port
from montero_api.settings import ConfigError, Settings


def _secret_file(tmp_path: Path, name: str, value: str, mode: int = 0o400) -> Path:
    path = tmp_path / name
    path.write_text(value)
    path.chmod(mode)
    return path


def test_each_setting_reads_its_file(tmp_path: Path) -> None:
    key, mail, redis_pw = secrets.token_hex(32), secrets.token_urlsafe(16), secrets.token_hex(16)
    settings = Settings.from_env({
        "FLASK_ENV": "production",
        "SECRET_KEY_FILE": str(_secret_file(tmp_path, "secret_key", key + "\n")),
        "MAIL_PASSWORD_FILE": str(_secret_file(tmp_path, "mail_password", mail)),
        "REDIS_PASSWORD_FILE": str(_secret_file(tmp_path, "redis_password", redis_pw + "\r\n")),
        "RATELIMIT_STORAGE_URL": "redis://redis:6379/0",
        "MAIL_PORT_FILE": str(_secret_file(tmp_path, "mail_port", "2525\n")),
    })
    assert settings.SECRET_KEY == key  # the trailing newline `echo` adds is not part of the key
    assert settings.MAIL_PASSWORD == mail
    assert settings.REDIS_PASSWORD == redis_pw
    assert settings.RATELIMIT_STORAGE_URL == f"redis://:{redis_pw}@redis:6379/0"
    assert settings.MAIL_PORT == 2525  # typed like the variable itself
    assert key not in str(settings.redacted()) and mail not in str(settings.redacted())


def test_only_one_trailing_newline_is_dropped(tmp_path: Path) -> None:
    value = "  spaced value with trailing blank \n\n"
    settings = Settings.from_env({"FLASK_ENV": "development",
                                  "MAIL_PASSWORD_FILE": str(_secret_file(tmp_path, "p", value))})
    assert settings.MAIL_PASSWORD == value[:-1]


def test_an_empty_file_variable_means_unset(tmp_path: Path) -> None:
    # compose and stack files pass `${MAIL_PASSWORD_FILE:-}` as an empty string
    settings = Settings.from_env({"FLASK_ENV": "development", "MAIL_PASSWORD": "direct", "MAIL_PASSWORD_FILE": " "})
    assert settings.MAIL_PASSWORD == "direct"


def test_both_the_value_and_the_file_is_refused(tmp_path: Path) -> None:
    key = secrets.token_hex(32)
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"FLASK_ENV": "production", "SECRET_KEY": key,
                           "SECRET_KEY_FILE": str(_secret_file(tmp_path, "k", secrets.token_hex(32)))})
    message = str(info.value)
    assert message.startswith("both SECRET_KEY and SECRET_KEY_FILE are set: keep one")
    assert key not in message and "\n" not in message


def test_a_missing_file_names_the_variable_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "secret_key"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"FLASK_ENV": "production", "SECRET_KEY_FILE": str(missing)})
    assert str(info.value).startswith(f"SECRET_KEY_FILE={missing} cannot be read (No such file or directory)")


def test_an_unreadable_file_is_refused_without_its_content() -> None:
    """A secret mounted for another uid (mode 0400, owner root): the app's user cannot read it."""
    value = secrets.token_hex(32)
    folder = Path(tempfile.mkdtemp(prefix="montero-secret-"))
    try:
        folder.chmod(0o755)
        path = _secret_file(folder, "secret_key", value, mode=0o400 if os.geteuid() == 0 else 0o000)
        # settings.py is standard library only: a copy runs where the checkout and the venv are not readable.
        shutil.copy(BACKEND / "montero_api" / "settings.py", folder / "settings.py")
        (folder / "settings.py").chmod(0o644)
        code = ("import sys; from settings import Settings, ConfigError\n"
                "try:\n    Settings.from_env({'FLASK_ENV': 'production', 'SECRET_KEY_FILE': sys.argv[1]})\n"
                "except ConfigError as exc:\n    print(exc)\n")
        # As root (CI containers) the check runs as nobody: root reads any file.
        as_user = {"user": 65534, "group": 65534} if os.geteuid() == 0 else {}
        python = shutil.which("python3", path="/usr/bin:/usr/local/bin") or sys.executable
        done = subprocess.run([python, "-c", code, str(path)], cwd=folder, capture_output=True, text=True,
                              timeout=60, check=False, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(folder)},
                              **as_user)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"SECRET_KEY_FILE={path} cannot be read (Permission denied); "
                                      "mount the file readable by uid "), done.stdout
        assert value not in done.stdout + done.stderr
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


def test_a_directory_or_an_empty_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"SECRET_KEY_FILE=.* cannot be read \(Is a directory\)"):
        Settings.from_env({"FLASK_ENV": "production", "SECRET_KEY_FILE": str(tmp_path)})
    empty = _secret_file(tmp_path, "empty", "\n")
    with pytest.raises(ConfigError, match=r"^MAIL_PASSWORD_FILE=.* is empty; put the value in it"):
        Settings.from_env({"FLASK_ENV": "development", "MAIL_PASSWORD_FILE": str(empty)})


def test_a_weak_key_from_a_file_is_refused_like_one_from_the_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SECRET_KEY is a documented placeholder"):
        Settings.from_env({"FLASK_ENV": "production", "SECRET_KEY_FILE": str(_secret_file(tmp_path, "k", "change-me"))})


def test_gunicorn_starts_from_files_and_refuses_both_in_one_line(tmp_path: Path) -> None:
    """The real server: SECRET_KEY_FILE alone starts it; SECRET_KEY and SECRET_KEY_FILE together stop it."""
    key = secrets.token_hex(32)
    base = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "SECRET_KEY_FILE")} | {
        "FLASK_ENV": "production", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "LOG_DIR": str(tmp_path),
        "SECRET_KEY_FILE": str(_secret_file(tmp_path, "secret_key", key + "\n")), "MONTERO_METRICS": "off",
    }
    check = [sys.executable, "-c", ("from wsgi import app; print(app.config['SECRET_KEY'] == open(__import__('os')"
             ".environ['SECRET_KEY_FILE']).read().strip())")]
    done = subprocess.run(check, cwd=BACKEND, env=base, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "True"  # the lines before are the app's log
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{free_port()}", "wsgi:app"],
        cwd=BACKEND, env=base | {"SECRET_KEY": secrets.token_hex(32)}, capture_output=True, text=True, timeout=60,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert lines == [("montero_api: configuration error: both SECRET_KEY and SECRET_KEY_FILE are set: keep one "
                     "(SECRET_KEY_FILE names a file holding the value, e.g. a Docker secret)")]
    assert "Traceback" not in result.stderr and key not in result.stderr
