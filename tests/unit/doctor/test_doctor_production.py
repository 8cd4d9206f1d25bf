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


def test_default_secrets_fail(prod: tuple[Path, DoctorEngine]) -> None:
    root, engine = prod
    (root / ".env.example").write_text("SECRET_KEY=change-me\nMAIL_PASSWORD=tu-password-de-aplicacion\n")
    write_env(root, f"SECRET_KEY={STRONG_KEY}\nMAIL_PASSWORD=tu-password-de-aplicacion\n")
    finding = _by_id(check_production(make_ctx(root, engine, compose=GOOD_COMPOSE, production=True)))["prod.secrets"]
    assert finding.status.value == "fail" and "MAIL_PASSWORD" in finding.message
    assert "tu-password" not in finding.message
