"""`montero tls issue/renew` against a stand-in certbot (the unit boundary: a script on PATH that
records how it was called); certificates are real PEM files. The real CA path is
tests/e2e/test_acme_e2e.py (Pebble, certbot, nginx)."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
from pathlib import Path
from unittest import mock

import pytest
from typer.testing import CliRunner

from montero_ops.cli import app
from montero_ops.services import acme

RUN = "python_on_whales.components.compose.cli_wrapper.run"

# What certbot 2.1 printed for a renewal whose challenge could not be fetched (captured from a real run).
CHALLENGE_REFUSED = """\
Saving debug log to /x/letsencrypt/logs/letsencrypt.log

- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Processing /x/letsencrypt/renewal/acme.test.conf
- - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - -
Renewing an existing certificate for acme.test

Certbot failed to authenticate some domains (authenticator: webroot). The Certificate Authority reported these problems:
  Domain: acme.test
  Type:   connection
  Detail: Get "http://acme.test:24080/.well-known/acme-challenge/Vvnj": dial tcp 127.0.0.1:24080: connect: connection refused

Hint: The Certificate Authority failed to download the temporary challenge files created by Certbot.

Failed to renew certificate acme.test with error: Some challenges have failed.
All renewals failed. The following certificates could not be renewed:
  /x/letsencrypt/live/acme.test/fullchain.pem (failure)
1 renew failure(s), 0 parse failure(s)
Ask for help or search for solutions at https://community.letsencrypt.org. See the logfile /x/letsencrypt.log.
"""
REFUSED_LINE = ('acme.test: connection: Get "http://acme.test:24080/.well-known/acme-challenge/Vvnj": '
                "dial tcp 127.0.0.1:24080: connect: connection refused")


def test_reason_is_the_cas_problem_in_one_line() -> None:
    assert acme.certbot_reason(CHALLENGE_REFUSED) == REFUSED_LINE


def test_reason_of_an_unexpected_error_is_the_line_after_it() -> None:
    out = ("Saving debug log to /x.log\nAn unexpected error occurred:\n"
           "requests.exceptions.SSLError: certificate verify failed\nAsk for help or search for solutions at x\n")
    assert acme.certbot_reason(out) == "requests.exceptions.SSLError: certificate verify failed"
    assert acme.certbot_reason("", 7) == "certbot exited with code 7"


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shop"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text("services: {}\n")
    monkeypatch.setenv("MONTERO_PROJECT_DIR", str(root))
    monkeypatch.delenv("MONTERO_CERTS_DIR", raising=False)
    monkeypatch.setattr("montero_ops.state.State.client", lambda self, project=None, check=True: _client(project))
    return root


def _client(project: object) -> object:
    from montero_ops.client import build_client

    assert project is not None
    return build_client(project, client_call=["true"])  # type: ignore[arg-type]


@pytest.fixture()
def certbot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A certbot on PATH that appends its argv and REQUESTS_CA_BUNDLE to calls.jsonl and exits
    with $FAKE_CERTBOT_RC, printing $FAKE_CERTBOT_OUT."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "certbot"
    calls = tmp_path / "calls.jsonl"
    script.write_text(
        "#!/usr/bin/env python3\nimport json, os, sys\n"
        f"open({str(calls)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], "
        "'bundle': os.environ.get('REQUESTS_CA_BUNDLE')}) + '\\n')\n"
        "sys.stdout.write(os.environ.get('FAKE_CERTBOT_OUT', ''))\n"
        "sys.exit(int(os.environ.get('FAKE_CERTBOT_RC', '0')))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return calls


def _calls(path: Path) -> list[dict[str, object]]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


def _lineage(root: Path, name: str, days: int, authenticator: str = "webroot") -> Path:
    """A certbot lineage as certbot leaves it: renewal conf, live/ and a real certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    le = root / "docker" / "certs" / "letsencrypt"
    live = le / "live" / name
    live.mkdir(parents=True)
    (le / "renewal").mkdir(exist_ok=True)
    (le / "renewal" / f"{name}.conf").write_text(
        f"version = 2.1.0\n[renewalparams]\nauthenticator = {authenticator}\nserver = https://127.0.0.1:1/dir\n")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Intermediate")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(key, hashes.SHA256()))
    for fname in ("cert.pem", "fullchain.pem"):
        (live / fname).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return live


def invoke(*args: str, env: dict[str, str] | None = None) -> CliRunner.invoke:  # type: ignore[valid-type]
    return CliRunner().invoke(app, list(args), env=env)


def test_nothing_due_exits_0_without_asking_the_ca(project: Path, certbot: Path) -> None:
    _lineage(project, "acme.test", days=20)
    result = invoke("tls", "renew", "--days", "10")
    assert result.exit_code == 0, result.output
    assert "acme.test: not due" in result.output and "nothing is due" in result.output
    assert _calls(certbot) == []


def test_due_lineage_is_renewed_with_its_ca_bundle_and_nginx_reloaded(project: Path, certbot: Path,
                                                                       tmp_path: Path) -> None:
    _lineage(project, "acme.test", days=20)
    _lineage(project, "later.test", days=80)
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    acme.remember_ca_bundle(_project(project), "acme.test", bundle)
    with mock.patch(RUN, return_value="") as run:
        result = invoke("tls", "renew")
    assert result.exit_code == 0, result.output
    calls = _calls(certbot)
    assert len(calls) == 1  # later.test is not due
    argv = calls[0]["argv"]
    assert isinstance(argv, list)
    webroot = str((project / "docker" / "certs" / "webroot").resolve())
    assert argv[:7] == ["renew", "--non-interactive", "--no-random-sleep-on-renew", "--cert-name", "acme.test",
                        "--force-renewal", "--webroot"] and argv[7:9] == ["-w", webroot]
    assert calls[0]["bundle"] == str(bundle)  # kept from issue time: certbot itself forgets it
    assert "acme.test: renewed" in result.output
    assert run.call_args.args[0][-3:] == ["sh", "/usr/local/bin/montero-nginx", "reload"]


def test_failed_renewal_exits_1_with_certbots_reason_in_one_line(project: Path, certbot: Path) -> None:
    _lineage(project, "acme.test", days=5)
    before = sorted(p.name for p in (project / "docker" / "certs" / "letsencrypt" / "live" / "acme.test").iterdir())
    with mock.patch(RUN, return_value="") as run:
        result = invoke("tls", "renew", env={"FAKE_CERTBOT_RC": "1", "FAKE_CERTBOT_OUT": CHALLENGE_REFUSED})
    assert result.exit_code == 1
    errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
    assert errors == [('Error: certbot could not renew acme.test: connection: Get '
                      '"http://acme.test:24080/.well-known/acme-challenge/Vvnj": dial tcp 127.0.0.1:24080: '
                      "connect: connection refused")]
    assert "letsencrypt.log" in result.output
    run.assert_not_called()  # nothing renewed: nginx keeps what it serves
    after = sorted(p.name for p in (project / "docker" / "certs" / "letsencrypt" / "live" / "acme.test").iterdir())
    assert after == before


def test_manual_dns_lineage_renews_without_webroot(project: Path, certbot: Path) -> None:
    _lineage(project, "acme.test-wildcard", days=3, authenticator="manual")
    with mock.patch(RUN, return_value=""):
        result = invoke("tls", "renew")
    assert result.exit_code == 0, result.output
    argv = _calls(certbot)[0]["argv"]
    assert isinstance(argv, list) and "--webroot" not in argv and "-w" not in argv


def _project(root: Path) -> object:
    from montero_ops.project import find_project

    return find_project(root)


@pytest.mark.parametrize(("args", "message"), [
    (["--staging", "--acme-server", "https://ca.example/dir"], "--staging and --acme-server exclude each other"),
    (["--acme-server", "http://ca.example/dir"], "not an ACME directory URL"),
    (["--ca-bundle", "/nonexistent/ca.pem"], "cannot read the CA bundle /nonexistent/ca.pem"),
    (["--domain", "*.example.com"], "only the DNS-01 challenge can prove it"),
    (["--dns-hook", "/nonexistent/hook"], "not an executable file"),
])
def test_issue_bad_input_is_a_usage_error_and_runs_nothing(project: Path, certbot: Path, args: list[str],
                                                            message: str) -> None:
    base = {"--domain": "example.com", "--email": "ops@example.com"}
    for flag in list(base):
        if flag in args:
            base.pop(flag)
    argv = ["tls", "issue", *[x for kv in base.items() for x in kv], *args]
    result = invoke(*argv)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert _calls(certbot) == []
    assert not (project / "docker" / "certs").exists()


def test_issue_passes_server_and_ca_bundle_and_links_the_pair(project: Path, certbot: Path, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    _lineage(project, "example.com", days=20)  # what certbot would leave behind
    with mock.patch(RUN, return_value=""):
        result = invoke("tls", "issue", "--domain", "example.com", "--email", "ops@example.com",
                        "--acme-server", "https://127.0.0.1:14000/dir", "--ca-bundle", str(bundle))
    assert result.exit_code == 0, result.output
    call = _calls(certbot)[0]
    argv = call["argv"]
    assert isinstance(argv, list)
    assert argv[argv.index("--server") + 1] == "https://127.0.0.1:14000/dir" and call["bundle"] == str(bundle)
    certs = project / "docker" / "certs"
    assert str((certs / "fullchain.pem").readlink()) == "letsencrypt/live/example.com/fullchain.pem"
    assert "issuer CN=Test Intermediate" in result.output
    saved = json.loads((certs / "letsencrypt" / "montero.json").read_text())
    assert saved["ca_bundles"] == {"example.com": str(bundle)}


def test_issue_failure_gives_the_reason_and_leaves_the_active_pair(project: Path, certbot: Path) -> None:
    out = CHALLENGE_REFUSED.replace("Renewing an existing", "Requesting a")
    result = invoke("tls", "issue", "--domain", "acme.test", "--email", "ops@example.com",
                    env={"FAKE_CERTBOT_RC": "1", "FAKE_CERTBOT_OUT": out})
    assert result.exit_code == 1
    assert f"Error: certbot could not get a certificate for acme.test: {REFUSED_LINE}" in result.output
    assert not (project / "docker" / "certs" / "fullchain.pem").exists()
