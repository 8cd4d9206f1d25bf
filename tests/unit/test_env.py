"""env init / check / show on real files."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.throwaway_keys import throwaway_pem
from tests.unit.conftest import json_out

EXAMPLE = "# comment\nSECRET_KEY=change-me-generate-with-secrets-token-hex-32\nFLASK_ENV=production\nMAIL_PASSWORD=\n"


def test_init_creates_env_with_a_strong_key_mode_600(cli, project: Path) -> None:
    (project / ".env.example").write_text(EXAMPLE)
    result = cli("env", "init")
    assert result.exit_code == 0, result.output
    env = project / ".env"
    lines = env.read_text().splitlines()
    assert lines[0] == "# comment" and lines[2:4] == ["FLASK_ENV=production", "MAIL_PASSWORD="]
    key = lines[1].removeprefix("SECRET_KEY=")
    assert len(key) == 64 and int(key, 16) >= 0
    # Issue 21 point 3: Redis gets a generated password too (appended when the template lacks it).
    assert lines[4].startswith("REDIS_PASSWORD=") and len(lines[4].removeprefix("REDIS_PASSWORD=")) == 48
    assert lines[4].removeprefix("REDIS_PASSWORD=") not in result.output  # never printed
    # Issue 15 point 1: and the offsite (restic) password, both secrets from one `env init`.
    offsite = lines[5].removeprefix("MONTERO_OFFSITE_PASSWORD=")
    assert lines[5].startswith("MONTERO_OFFSITE_PASSWORD=") and len(offsite) >= 40 and len(lines) == 6
    assert offsite not in result.output and offsite != lines[4].removeprefix("REDIS_PASSWORD=")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert cli("env", "check").exit_code == 0


def test_init_never_overwrites_without_force(cli, project: Path) -> None:
    (project / ".env").write_text("SECRET_KEY=mine\n")
    result = cli("env", "init")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"Error: {project / '.env'} already exists",
        "  Fix: pass --force to overwrite it (its values are lost)",
    ]
    assert (project / ".env").read_text() == "SECRET_KEY=mine\n"
    assert cli("env", "init", "--force").exit_code == 0
    assert (project / ".env").read_text() != "SECRET_KEY=mine\n"


def test_init_without_example_writes_a_minimal_env(cli, project: Path) -> None:
    assert cli("env", "init").exit_code == 0
    lines = (project / ".env").read_text().splitlines()
    assert lines[1].startswith("SECRET_KEY=") and len(lines[2].removeprefix("REDIS_PASSWORD=")) == 48
    assert lines[3].startswith("MONTERO_OFFSITE_PASSWORD=") and len(lines) == 4


def test_check_reports_placeholder_short_and_missing(cli, project: Path) -> None:
    env = project / ".env"
    env.write_text("SECRET_KEY=change-me-generate-with-secrets-token-hex-32\n")
    env.chmod(0o600)
    result = cli("env", "check")
    assert result.exit_code == 1
    assert result.stdout == "✘ SECRET_KEY is a documented placeholder\n"
    env.write_text("SECRET_KEY=abc\n")
    assert cli("env", "check").stdout == "✘ SECRET_KEY is shorter than 32 characters\n"
    env.write_text("FLASK_ENV=production\n")
    result = cli("env", "check", "--json")
    assert result.exit_code == 1
    assert json_out(result) == {"ok": False, "findings": [
        {"level": "error", "variable": "SECRET_KEY", "message": "SECRET_KEY is not set"}]}


REAL_SETTINGS = Path(__file__).parents[2] / "backend" / "montero_api" / "settings.py"


def test_check_applies_the_apps_own_rule(cli, project: Path) -> None:
    """Issue 12.9: `env check` said "looks good" for a key the app refuses to start with."""
    settings = project / "backend" / "montero_api" / "settings.py"
    settings.parent.mkdir(parents=True)
    settings.write_text(REAL_SETTINGS.read_text())
    env = project / ".env"
    env.write_text("SECRET_KEY=development-key-0123456789abcdef0123456789\n")
    env.chmod(0o600)
    result = cli("env", "check")
    assert (result.exit_code, result.stdout) == (1, "✘ SECRET_KEY is a documented placeholder\n")
    env.write_text("SECRET_KEY=" + "4f" * 32 + "\n")
    assert cli("env", "check").stdout == "✔ .env looks good\n"


def test_check_loads_the_rule_from_the_projects_backend(cli, project: Path) -> None:
    settings = project / "backend" / "montero_api" / "settings.py"
    settings.parent.mkdir(parents=True)
    settings.write_text("def secret_key_problem(value):\n    return None if value == 'ok' else 'SECRET_KEY must be ok'\n")
    env = project / ".env"
    env.write_text("SECRET_KEY=" + "4f" * 32 + "\n")
    env.chmod(0o600)
    assert cli("env", "check").stdout == "✘ SECRET_KEY must be ok\n"


def test_check_warns_about_a_world_readable_env(cli, project: Path) -> None:
    env = project / ".env"
    env.write_text("SECRET_KEY=" + "a1" * 32 + "\n")
    env.chmod(0o644)
    result = cli("env", "check")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "! .env is readable by others (mode 644); run chmod 600", "✔ .env looks good"]


def test_show_redacts_secrets(cli, project: Path) -> None:
    (project / ".env").write_text(
        "SECRET_KEY=abcdef\nMAIL_PASSWORD='p w'\nFLASK_ENV=production\n"
        "DATABASE_URL=postgresql+psycopg://montero:hunter2@db:5432/montero\nMAIL_USERNAME=\n"
    )
    result = cli("env", "show")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "SECRET_KEY=********", "MAIL_PASSWORD=********", "FLASK_ENV=production",
        "DATABASE_URL=postgresql+psycopg://montero:********@db:5432/montero", "MAIL_USERNAME=",
    ]
    assert json_out(cli("env", "show", "--json"))["SECRET_KEY"] == "********"


def test_show_without_env(cli, project: Path) -> None:
    result = cli("env", "show")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [f"Error: {project / '.env'} does not exist",
                                          "  Fix: create it with `montero env init`"]


def test_env_outside_a_project_exit_4(cli, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli("env", "show")
    assert result.exit_code == 4
    assert result.stderr.splitlines()[0] == f"Error: no Montero stack found in {tmp_path} or any parent folder"


def test_show_treats_every_undeclared_variable_as_secret(cli, project: Path) -> None:
    """Issue 21.4: names the old pattern missed (PASS, AUTH, unknown ones) printed in clear."""
    (project / ".env").write_text(
        "SMTP_PASS=smtp-secret-1\nDB_PASS=db-secret-2\nAPI_AUTH=Basic-xyz-3\nWEBHOOK=https://hooks.test/T0/B1\n"
        "REDIS_PASSWORD=redis-secret-4\nMONTERO_OFFSITE_PASSWORD=restic-5\n"
        f'JWT_PRIVATE_KEY="{throwaway_pem()}"\n'
        "TZ=America/Bogota\nMAIL_PORT=587\nSHOP_COLOUR=blue\nMONTERO_CLEAR_ENV=SHOP_COLOUR\n"
    )
    result = cli("env", "show")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "SMTP_PASS=********", "DB_PASS=********", "API_AUTH=********", "WEBHOOK=********",
        "REDIS_PASSWORD=********", "MONTERO_OFFSITE_PASSWORD=********", "JWT_PRIVATE_KEY=********",
        "TZ=America/Bogota", "MAIL_PORT=587", "SHOP_COLOUR=blue", "MONTERO_CLEAR_ENV=SHOP_COLOUR",
    ]
    shown = json_out(cli("env", "show", "--json"))
    assert shown["JWT_PRIVATE_KEY"] == "********" and shown["SHOP_COLOUR"] == "blue"


def test_init_generates_the_offsite_password_and_says_it_once(cli, project: Path) -> None:
    (project / ".env.example").write_text(EXAMPLE + "MONTERO_OFFSITE_REPOSITORY=\nMONTERO_OFFSITE_PASSWORD=\n")
    result = cli("env", "init", "--offsite", "/mnt/usb/restic")
    assert result.exit_code == 0, result.output
    values = dict(ln.split("=", 1) for ln in (project / ".env").read_text().splitlines() if "=" in ln)
    assert values["MONTERO_OFFSITE_REPOSITORY"] == "/mnt/usb/restic"
    password = values["MONTERO_OFFSITE_PASSWORD"]
    assert len(password) >= 40 and password not in result.output
    assert result.stderr.count("Losing it loses the offsite backups") == 1
    # Said once: other commands do not repeat it.
    assert "Losing it" not in cli("env", "check").stderr
    shown = cli("env", "show")
    assert password not in shown.output and "MONTERO_OFFSITE_PASSWORD=********" in shown.output


def test_init_offsite_on_an_existing_env_never_replaces_a_password(cli, project: Path) -> None:
    env = project / ".env"
    env.write_text("SECRET_KEY=mine-and-long-enough-0123456789abcdef\nMONTERO_OFFSITE_PASSWORD=the-old-one\n")
    result = cli("env", "init", "--offsite", "s3:http://127.0.0.1:8333/bucket")
    assert result.exit_code == 0, result.output
    text = env.read_text()
    assert "SECRET_KEY=mine-and-long-enough-0123456789abcdef" in text and "MONTERO_OFFSITE_PASSWORD=the-old-one" in text
    assert "MONTERO_OFFSITE_REPOSITORY=s3:http://127.0.0.1:8333/bucket" in text
    assert "Losing it" not in result.stderr  # nothing generated, nothing to say
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    # Without a password yet: one is generated, and said.
    env.write_text("SECRET_KEY=mine-and-long-enough-0123456789abcdef\n")
    result = cli("env", "init", "--offsite", "/srv/restic")
    assert result.exit_code == 0 and "Losing it loses the offsite backups" in result.stderr
    assert "MONTERO_OFFSITE_PASSWORD=" in env.read_text()


# What the real `docker compose config` (2.40) answered for `A=<value>` in the --env-file: True where it
# refused with "Invalid template" (printing the value), False where it read the file.
COMPOSE_TEMPLATES = {
    "${UNCLOSED-x": True, "${B:-x}": False, "${B:-${C}}": False, "$1abc": False, "${1}": True, '"${X"': True,
    "'${X'": False, "$${X": False, "pa$$word": False, "${ X}": True, "abc}${": True, "${X:}": True,
    "${X:=y}": True, "${X+y}": False, "$": False, "a$": False, "${}": True, "${X-}": False, '"a\\n${b"': True,
    "${X-a}b}": False, "${X:-${Y}": True, "${X?a b}": False, "${X}${Y}$Z": False,
}


@pytest.mark.parametrize(("value", "invalid"), list(COMPOSE_TEMPLATES.items()))
def test_template_problems_agree_with_compose(value: str, invalid: bool) -> None:
    from montero_ops.services.envfile import template_problems

    assert template_problems(f"OTHER=1\nA={value}\n") == (["A"] if invalid else [])


def test_check_names_a_value_compose_cannot_read_without_printing_it(cli, project: Path) -> None:
    env = project / ".env"
    env.write_text("SECRET_KEY=" + "5e" * 32 + "\nMAIL_PASSWORD=${UNCLOSED-hunter2-mail\n")
    env.chmod(0o600)
    result = cli("env", "check")  # said ".env looks good" while compose refused the file
    assert result.exit_code == 1
    assert "MAIL_PASSWORD" in result.stdout and "hunter2" not in result.output
