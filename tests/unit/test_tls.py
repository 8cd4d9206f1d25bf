"""`montero tls`: real certificates in a temp project; only the docker boundary (compose exec) is faked."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from montero_ops.cli import app
from montero_ops.services import acme, tls

RUN = "python_on_whales.components.compose.cli_wrapper.run"


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "compose.yml").write_text("services: {}\n")
    monkeypatch.setenv("MONTERO_PROJECT_DIR", str(tmp_path))
    monkeypatch.delenv("MONTERO_CERTS_DIR", raising=False)
    monkeypatch.setattr("montero_ops.state.State.client", lambda self, project=None, check=True: _client(project))
    return tmp_path


def _client(project: object) -> object:
    from montero_ops.client import build_client

    assert project is not None
    return build_client(project, client_call=["true"])  # type: ignore[arg-type]


def invoke(*args: str) -> CliRunner.invoke:  # type: ignore[valid-type]
    return CliRunner().invoke(app, list(args))


def test_status_without_certificate_exits_1(project: Path) -> None:
    result = invoke("tls", "status")
    assert result.exit_code == 1
    assert "no certificate" in result.output


def test_self_signed_writes_a_pair_and_reloads_nginx(project: Path) -> None:
    with mock.patch(RUN, return_value="") as run:
        result = invoke("tls", "self-signed", "--domain", "Example.TEST", "--days", "30")
    assert result.exit_code == 0, result.output
    cmd = run.call_args.args[0]
    assert cmd[-8:] == ["exec", "--index", 1, "--no-TTY", "nginx", "sh", "/usr/local/bin/montero-nginx", "reload"]
    assert "--profile" in cmd and "production" in cmd
    certs = project / "docker" / "certs"
    key = certs / "privkey.pem"
    assert key.stat().st_mode & 0o777 == 0o600  # the key is readable by its owner only
    # openssl agrees the pair matches and names the domain
    text = subprocess.run(["openssl", "x509", "-in", str(certs / "fullchain.pem"), "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "DNS:example.test" in text and "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    st = json.loads(invoke("tls", "status", "--json").stdout)
    assert st["present"] and st["self_signed"] and st["source"] == "self-signed"
    assert 28 <= st["days_left"] <= 30


def test_status_warn_days_fails_when_due(project: Path) -> None:
    with mock.patch(RUN, return_value=""):
        invoke("tls", "self-signed", "--days", "10")
    result = invoke("tls", "status", "--warn-days", "21")
    assert result.exit_code == 1
    assert "expires in" in result.output and "montero tls renew" in result.output
    assert invoke("tls", "status", "--warn-days", "5").exit_code == 0


def test_reload_when_nginx_is_not_running_is_not_an_error(project: Path) -> None:
    from python_on_whales.exceptions import DockerException

    err = DockerException(["docker", "compose", "exec"], 1, b"", b'service "nginx" is not running')
    with mock.patch(RUN, side_effect=err):
        result = invoke("tls", "self-signed")
    assert result.exit_code == 0, result.output
    assert "nginx is not running" in result.output


def test_bad_domain_is_a_usage_error(project: Path) -> None:
    result = invoke("tls", "self-signed", "--domain", "bad domain;rm")
    assert result.exit_code == 2
    assert "not a valid domain" in result.output
    assert not (project / "docker" / "certs" / "fullchain.pem").exists()


def test_issue_print_builds_the_certbot_webroot_command(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)  # no host certbot: the container form
    monkeypatch.setenv("MONTERO_CERTBOT_IMAGE", "certbot/certbot:v2.11.0")
    result = invoke("tls", "issue", "--domain", "example.com", "--email", "ops@example.com", "--print")
    assert result.exit_code == 0, result.output
    certs = (project / "docker" / "certs").resolve()
    assert result.stdout.split() == [
        "docker", "run", "--rm", "--name", f"{project.name.lower()}-certbot", "--network", "host",
        "-v", f"{certs / 'letsencrypt'}:/etc/letsencrypt", "-v", f"{certs / 'webroot'}:/var/www/certbot",
        "certbot/certbot:v2.11.0", "certonly", "--non-interactive", "--agree-tos", "--email", "ops@example.com",
        "-d", "example.com", "--cert-name", "example.com", "--keep-until-expiring",
        "--webroot", "-w", "/var/www/certbot",
    ]


def test_issue_with_host_certbot_uses_project_folders(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/certbot" if name == "certbot" else None)
    from montero_ops.project import find_project

    cmd = acme.certbot_command(find_project(project), acme.renew_args("example.com"))
    certs = str((project / "docker" / "certs").resolve())
    assert cmd[:7] == ["/usr/bin/certbot", "renew", "--non-interactive", "--no-random-sleep-on-renew",
                       "--cert-name", "example.com", "--force-renewal"]
    assert cmd[7:10] == ["--webroot", "-w", f"{certs}/webroot"]
    assert cmd[10:] == ["--config-dir", f"{certs}/letsencrypt", "--work-dir", f"{certs}/letsencrypt/work",
                       "--logs-dir", f"{certs}/letsencrypt/logs"]


def test_issue_rejects_bad_email(project: Path) -> None:
    result = invoke("tls", "issue", "--domain", "example.com", "--email", "nobody", "--print")
    assert result.exit_code == 2
    assert "not an e-mail address" in result.output


def test_letsencrypt_pair_is_linked_relative(project: Path) -> None:
    from montero_ops.project import find_project

    proj = find_project(project)
    tls.self_signed(proj, "le.example")  # a real PEM to stand in for certbot's output
    certs = project / "docker" / "certs"
    live = certs / "letsencrypt" / "live" / "le.example"
    live.mkdir(parents=True)
    for name in ("fullchain.pem", "privkey.pem"):
        (certs / name).rename(live / name)
    tls.link_letsencrypt(proj, "le.example")
    assert (certs / "fullchain.pem").is_symlink()
    assert str((certs / "fullchain.pem").readlink()) == "letsencrypt/live/le.example/fullchain.pem"
    assert tls.status(proj).source == "self-signed"  # issuer == subject here; a real LE cert says "letsencrypt"


def test_cron_line(project: Path) -> None:
    result = invoke("tls", "cron")
    assert result.exit_code == 0
    line = result.stdout.strip()
    assert line.startswith("17 3 * * * cd ") and line.endswith("tls renew >> " + str(project / "logs" / "tls-renew.log")
                                                                 + " 2>&1")


def test_renew_of_a_self_signed_certificate_says_so(project: Path) -> None:
    with mock.patch(RUN, return_value=""):
        invoke("tls", "self-signed")
    result = invoke("tls", "renew")
    assert result.exit_code == 0
    assert "self-signed" in result.output


def test_status_days_left_counts_from_now(project: Path) -> None:
    from montero_ops.project import find_project

    st = tls.self_signed(find_project(project), days=100)
    assert st.not_after is not None
    left = dt.datetime.fromisoformat(st.not_after) - dt.datetime.now(dt.UTC)
    assert st.days_left == left.days
