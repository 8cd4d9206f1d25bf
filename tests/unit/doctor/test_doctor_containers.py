"""restarts.* and health.*: inspect documents and logs as the Engine API returns them."""

from __future__ import annotations

from pathlib import Path

import pytest
from doctor_helpers import STRONG_KEY, DoctorEngine, make_ctx, write_env

from montero_ops.services.doctor.containers import check_health, check_restarts

CRASH_LOG = "\n".join(
    [f"[boot {i}] starting gunicorn" for i in range(60)]
    + ["montero_api.settings.ConfigError: SECRET_KEY is shorter than 32 characters: python -c ..."]
)


def _by_id(findings: list) -> dict:
    return {f.id: f for f in findings}


def test_no_restarts_pass(root: Path, engine: DoctorEngine) -> None:
    engine.add("app")
    engine.add("redis")
    found = _by_id(check_restarts(make_ctx(root, engine)))
    assert found["restarts.app"].status.value == "pass"
    assert found["restarts.redis"].status.value == "pass"


def test_a_few_restarts_warn(root: Path, engine: DoctorEngine) -> None:
    engine.add("app", running=False, restarts=1, exit_code=137, oom=True)
    engine.add("redis")
    finding = _by_id(check_restarts(make_ctx(root, engine)))["restarts.app"]
    assert finding.status.value == "warn"
    assert "last exit code 137" in finding.message and "out of memory" in finding.message
    assert "MONTERO_APP_MEMORY" in finding.fix


def test_crash_loop_fails_with_cause_logs_and_probes(root: Path, engine: DoctorEngine) -> None:
    engine.add(
        "app",
        running=False,
        restarting=True,
        restarts=7,
        exit_code=1,
        health="unhealthy",
        logs=CRASH_LOG,
        probes=[{"ExitCode": 1, "Output": "connection refused"}],
    )
    engine.add("redis")
    finding = _by_id(check_restarts(make_ctx(root, engine)))["restarts.app"]
    assert finding.status.value == "fail"
    assert "restarting in a loop (restarts: 7, last exit code 1)" in finding.message
    assert "SECRET_KEY is shorter than 32" in finding.message
    assert "SECRET_KEY" in finding.fix and "secrets.token_hex(32)" in finding.fix
    logs = [line for line in finding.detail if line.startswith("[boot") or "ConfigError" in line]
    assert len(logs) == 50  # exactly the last 50 log lines
    assert finding.detail[-1] == "probe exit 1: connection refused"


def test_restart_logs_are_scrubbed(root: Path, engine: DoctorEngine) -> None:
    write_env(root, f"SECRET_KEY={STRONG_KEY}\nMAIL_PASSWORD=hunter2-mail\n")
    engine.add(
        "app", restarts=5, restarting=True, logs=f"boot with key {STRONG_KEY}\nMAIL_PASSWORD=hunter2-mail\ncrash"
    )
    engine.add("redis")
    finding = _by_id(check_restarts(make_ctx(root, engine)))["restarts.app"]
    text = "\n".join(finding.detail) + finding.message
    assert STRONG_KEY not in text and "hunter2-mail" not in text


def test_stack_down_skips_restarts_and_warns_health(root: Path, engine: DoctorEngine) -> None:
    ctx = make_ctx(root, engine)
    assert {f.status.value for f in check_restarts(ctx)} == {"skip"}
    health = check_health(ctx)
    assert [f.id for f in health] == ["health.app", "health.redis"]
    assert all(f.status.value == "warn" and f.fix == "montero up" for f in health)


def test_services_come_from_compose_config(root: Path, engine: DoctorEngine) -> None:
    ctx = make_ctx(root, engine, compose={"services": {"app": {}, "redis": {}, "nginx": {}}})
    assert [f.id for f in check_health(ctx)] == ["health.app", "health.redis", "health.nginx"]


@pytest.mark.parametrize(
    ("health", "status"), [("healthy", "pass"), (None, "pass"), ("starting", "warn"), ("unhealthy", "fail")]
)
def test_health_states(root: Path, engine: DoctorEngine, health: str | None, status: str) -> None:
    engine.add(
        "app",
        health=health,
        probes=[{"ExitCode": 1, "Output": "urllib.error.URLError: <urlopen error [Errno 111] Connection refused>"}],
    )
    engine.add("redis")
    finding = _by_id(check_health(make_ctx(root, engine)))["health.app"]
    assert finding.status.value == status
    if status == "fail":
        assert "Connection refused" in finding.message
        assert "montero logs app" in finding.fix


def test_stopped_service_fails_with_start_and_safe_repair(root: Path, engine: DoctorEngine) -> None:
    engine.add("app")
    engine.add("redis", running=False, exit_code=0, health="unhealthy")
    finding = _by_id(check_health(make_ctx(root, engine)))["health.redis"]
    assert finding.status.value == "fail"
    assert "exited (exit code 0)" in finding.message
    assert finding.fix == "montero start redis"
    assert finding.repair is not None and finding.repair.safe


def test_worst_replica_wins(root: Path, engine: DoctorEngine) -> None:
    engine.add("app")
    engine.add("app", health="unhealthy")
    engine.add("redis")
    finding = _by_id(check_health(make_ctx(root, engine)))["health.app"]
    assert finding.status.value == "fail" and "shop-app-2" in finding.message


@pytest.mark.parametrize(
    ("line", "fix"),
    [
        ("montero-entrypoint: ERROR: /app/data is not writable by uid 1000.", "sudo chown -R 1000:1000 data logs"),
        ("sqlite3.OperationalError: unable to open database file", "sudo chown -R 1000:1000 data logs"),
        ("sqlite3.DatabaseError: database disk image is malformed", "montero restore sqlite --latest"),
        ("ModuleNotFoundError: No module named 'flask_limiter'", "rebuild the image"),
    ],
)
def test_known_causes_in_crash_logs(root: Path, engine: DoctorEngine, line: str, fix: str) -> None:
    engine.add("app", restarts=4, restarting=True, logs=f"starting\n{line}\n")
    engine.add("redis")
    finding = _by_id(check_restarts(make_ctx(root, engine)))["restarts.app"]
    assert finding.status.value == "fail" and line[:30] in finding.message
    assert finding.fix.startswith(fix)
