"""Issues 12.8 / 21.4 on a real stack: a multi-line secret and names no pattern would guess
never reach `config`, `env show` or `inspect` output, text or JSON."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.throwaway_keys import throwaway_pem

PEM_LINES = throwaway_pem().splitlines()  # header, body lines, footer


def test_config_env_show_and_inspect_print_no_line_of_a_multi_line_secret(stack_project: Any,
                                                                          app_image: str) -> None:
    p = stack_project
    pem = "\n".join(PEM_LINES)
    env = p.root / ".env"
    env.write_text(
        "SECRET_KEY=" + "5e" * 32 + "\n"
        f'MAIL_PASSWORD="{pem}"\n'          # compose passes it to the app: a block scalar in its YAML
        "SMTP_PASS=smtp-pass-value-1\nAPI_AUTH=api-auth-value-2\nSOME_NEW_THING=new-thing-value-3\n"
    )
    env.chmod(0o600)
    secrets = [*PEM_LINES[1:3], "smtp-pass-value-1", "api-auth-value-2", "new-thing-value-3"]

    # Compose itself prints the key's body lines in clear: the case montero must cover.
    raw = p.compose("config")
    assert raw.returncode == 0, raw.stderr
    assert PEM_LINES[1] in raw.stdout

    for args in (("config",), ("config", "--json"), ("env", "show"), ("env", "show", "--json")):
        done = p.run_montero(*args)
        assert done.returncode == 0, (args, done.stderr)
        for secret in secrets:
            assert secret not in done.stdout + done.stderr, (args, secret)
    doc = json.loads(p.run_montero("config", "--json").stdout)
    assert doc["services"]["app"]["environment"]["MAIL_PASSWORD"] == "********"
    assert doc["services"]["app"]["environment"]["TZ"] == "America/Bogota"

    up = p.run_montero("up")
    assert up.returncode == 0, up.stderr
    for args in (("inspect", "app"), ("inspect", "app", "--env")):
        done = p.run_montero(*args)
        assert done.returncode == 0, (args, done.stderr)
        for secret in secrets[:2]:
            assert secret not in done.stdout, (args, secret)
        assert "MAIL_PASSWORD=********" in done.stdout


def test_a_value_compose_cannot_read_never_reaches_the_terminal(stack_project: Any) -> None:
    """Issue 21.4: compose quotes a value it cannot read ("Invalid template") in its own error, and a
    streamed command (`up`) left that on the terminal in clear. Montero refuses such a .env first."""
    p = stack_project
    env = p.root / ".env"
    env.write_text("SECRET_KEY=" + "5e" * 32 + "\nMAIL_PASSWORD=${UNCLOSED-hunter2-mail\nSMTP_PASS=pa55-smtp-x\n")
    env.chmod(0o600)
    raw = p.compose("config")  # the real compose prints the value: what montero must never pass on
    assert raw.returncode != 0 and "hunter2-mail" in raw.stderr, raw.stderr
    for args in (("up",), ("config",), ("build", "app")):
        done = p.run_montero(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "hunter2" not in done.stdout + done.stderr, (args, done.stderr)
        assert "MAIL_PASSWORD" in done.stderr, (args, done.stderr)
    started = subprocess.run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={p.name}"],
                             capture_output=True, text=True, check=True, timeout=60)
    assert started.stdout.strip() == ""  # nothing was started
    checked = p.run_montero("env", "check")
    assert checked.returncode == 1 and "MAIL_PASSWORD" in checked.stdout and "hunter2" not in checked.stdout
