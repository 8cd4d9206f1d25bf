"""prod.*: the security checklist from compose config (given), real cert files, container documents."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from doctor_helpers import STRONG_KEY, DoctorEngine, make_ctx, write_env
from test_doctor_sqlite import _backup

from montero_ops.services.doctor.production import check_production

ROTATED = {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
LIMITS = {"resources": {"limits": {"cpus": "1", "memory": "512M"}}}
GOOD_COMPOSE: dict[str, Any] = {
    "services": {
        "app": {"logging": ROTATED, "deploy": LIMITS, "environment": {"RATELIMIT_STORAGE_URL": "redis://redis:6379/0"}},
        "redis": {"logging": ROTATED, "deploy": LIMITS},
        "nginx": {"logging": ROTATED, "mem_limit": "128m"},
    }
}
LISTEN_443 = (
    "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
    "   0: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n"
    "   1: 00000000:01BB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2\n"
)


def _by_id(findings: list) -> dict:
    return {f.id: f for f in findings}


@pytest.fixture
def prod(root: Path, engine: DoctorEngine) -> tuple[Path, DoctorEngine]:
    write_env(root, f"SECRET_KEY={STRONG_KEY}\nMAIL_PASSWORD=\n")
    certs = root / "docker" / "certs"
    certs.mkdir()
    (certs / "fullchain.pem").write_text("cert")
    (certs / "privkey.pem").write_text("key")
    _backup(root, timedelta(hours=3))
    engine.add("app", user="appuser")
    engine.add("redis", user="redis")
    engine.add("nginx", user="101")
    engine.on_exec(lambda cmd: cmd[:2] == ["cat", "/proc/net/tcp"], 0, LISTEN_443)
    return root, engine


def test_not_run_without_production(root: Path) -> None:
    assert check_production(make_ctx(root, compose=GOOD_COMPOSE)) == []


def test_checklist_passes(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    found = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))
    assert list(found) == [
        "prod.https",
        "prod.ratelimit",
        "prod.backups",
        "prod.logging",
        "prod.limits",
        "prod.nonroot",
        "prod.secrets",
    ]
    assert {k: f.status.value for k, f in found.items()} == dict.fromkeys(found, "pass")


def test_https_without_certificates_fails(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    (root / "docker" / "certs" / "privkey.pem").unlink()
    finding = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))["prod.https"]
    assert finding.status.value == "fail" and "privkey.pem missing" in finding.message
    assert "montero tls" in finding.fix


def test_https_nginx_down_warns_and_not_listening_fails(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    engine.items = [c for c in engine.items if "nginx" not in c["Name"]]
    finding = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))["prod.https"]
    assert finding.status.value == "warn"
    engine.add("nginx", user="101")
    engine.exec_results = [(lambda cmd: True, (0, LISTEN_443.replace(":01BB", ":1F90")))]
    finding = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))["prod.https"]
    assert finding.status.value == "fail" and "not listening on 443" in finding.message


def test_memory_rate_limits_fail(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    compose = {
        "services": {
            **GOOD_COMPOSE["services"],
            "app": {**GOOD_COMPOSE["services"]["app"], "environment": {"RATELIMIT_STORAGE_URL": "memory://"}},
        }
    }
    finding = _by_id(check_production(make_ctx(root, engine, compose=compose, production=True)))["prod.ratelimit"]
    assert finding.status.value == "fail" and "RATELIMIT_STORAGE_URL=redis://redis:6379/0" in finding.fix


def test_old_backups_fail(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    for folder in (root / "backups").iterdir():
        (folder / "manifest.json").unlink()
        folder.rmdir()
    _backup(root, timedelta(days=2))
    assert (
        _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))[
            "prod.backups"
        ].status.value
        == "fail"
    )


def test_missing_rotation_and_limits_fail(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    compose = {"services": {**GOOD_COMPOSE["services"], "redis": {"logging": {"driver": "json-file"}}}}
    found = _by_id(check_production(make_ctx(root, engine, compose=compose, production=True)))
    assert found["prod.logging"].status.value == "fail" and "redis" in found["prod.logging"].message
    assert found["prod.limits"].status.value == "fail" and "redis" in found["prod.limits"].message


def test_compose_config_unavailable_skips_static_items(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    found = _by_id(check_production(make_ctx(root, engine, compose=None, production=True)))
    assert found["prod.logging"].status.value == "skip" and found["prod.limits"].status.value == "skip"


def test_root_containers(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    engine.items[1]["Config"]["User"] = ""  # redis as root: a warning
    found = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))
    assert found["prod.nonroot"].status.value == "warn" and "shop-redis-1" in found["prod.nonroot"].message
    engine.items[0]["Config"]["User"] = "0:0"  # the app as root: a failure
    found = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))
    assert found["prod.nonroot"].status.value == "fail"
    # The rebuild goes through the zero-downtime release path, never `up --build` (an outage; issue 21.5).
    assert found["prod.nonroot"].fix.endswith("montero deploy") and "up --build" not in found["prod.nonroot"].fix


def test_default_secrets_fail(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    (root / ".env.example").write_text("SECRET_KEY=change-me\nMAIL_PASSWORD=tu-password-de-aplicacion\n")
    write_env(root, f"SECRET_KEY={STRONG_KEY}\nMAIL_PASSWORD=tu-password-de-aplicacion\n")
    finding = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))["prod.secrets"]
    assert finding.status.value == "fail" and "MAIL_PASSWORD" in finding.message
    assert "tu-password" not in finding.message


def _ca_issued(root: Path, days: int) -> None:
    """A real leaf certificate signed by a separate CA key (as Pebble or Let's Encrypt issue)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app.test")]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Pebble Intermediate CA")]))
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days, hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("app.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    certs = root / "docker" / "certs"
    (certs / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def test_renewal_findings(prod: tuple[Path, DoctorEngine]) -> None:
    import json

    from montero_ops.services import schedule

    root, engine = prod
    project = make_ctx(root, engine, compose=GOOD_COMPOSE, production=True).project

    def renewal() -> Any:
        return _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))["prod.renewal"]

    _ca_issued(root, days=5)
    soon = renewal()
    assert soon.status.value == "fail" and "expires in 5 day(s)" in soon.message and "tls renew" in soon.fix

    _ca_issued(root, days=60)
    missing = renewal()
    assert missing.status.value == "fail" and "no certificate renewal is scheduled" in missing.message
    assert "schedule install --job renew=" in missing.fix

    schedule.state_file(project).parent.mkdir(parents=True, exist_ok=True)
    schedule.state_file(project).write_text(json.dumps({"backend": "cron", "installed_at": "2026-01-01T00:00:00Z",
                                                        "entries": [{"job": "renew", "schedule": "daily 02:45",
                                                                     "period_seconds": 86400}]}))
    record = schedule.RunRecord("renew", "2026-01-02T02:45:00Z", "2026-01-02T02:45:09Z", 1, 9.0,
                                "Failed to renew certificate app.test: Connection refused", "montero tls renew")
    schedule.record_path(project, "renew").parent.mkdir(parents=True, exist_ok=True)
    schedule.record_path(project, "renew").write_text(json.dumps(record.to_dict()))
    broken = renewal()
    assert broken.status.value == "fail" and "Connection refused" in broken.message
    assert "schedule run renew" in broken.fix

    schedule.record_path(project, "renew").write_text(json.dumps({**record.to_dict(), "exit_code": 0}))
    assert renewal().status.value == "pass"
