"""`montero doctor` on the real engine: real faults injected, doctor must name each with its fix.

Faults: port held by another process, Redis stopped, .env missing, weak SECRET_KEY, an app
crash-looping from a bad setting, the data folder owned by root, the database corrupted on
purpose, migrations behind head. A healthy stack must give exit 0.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from typing import Any

import pytest


def doctor(project: Any, *args: str) -> tuple[int, dict[str, dict[str, Any]], str]:
    done = project.run_montero("doctor", "--json", *args, timeout=120)
    try:
        findings = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"doctor printed no JSON (exit {done.returncode}):\n{done.stdout}\n{done.stderr}", pytrace=False)
    return done.returncode, {f["id"]: f for f in findings}, done.stdout + done.stderr


def _up(project: Any) -> None:
    done = project.compose("up", "-d", "--wait", "--wait-timeout", "240", timeout=600)
    if done.returncode != 0:
        pytest.fail(f"compose up failed:\n{done.stderr[-2000:]}\n--- logs ---\n{project.logs()}", pytrace=False)


def _wait(predicate: Any, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(1)
    return False


def test_healthy_stack_then_redis_stopped_migrations_behind_and_corruption(stack_project: Any) -> None:
    key = secrets.token_hex(32)
    stack_project.write_env(SECRET_KEY=key)
    _up(stack_project)

    code, found, output = doctor(stack_project)
    failures = {k: v for k, v in found.items() if v["status"] == "fail"}
    assert code == 0, failures
    for check_id in (
        "docker.daemon",
        "compose.plugin",
        "ports.app",
        "health.app",
        "health.redis",
        "restarts.app",
        "connect.redis",
        "connect.data_writable",
        "data.integrity",
        "data.migrations",
        "sqlite.locking",
        "config.secret_key",
    ):
        assert found[check_id]["status"] == "pass", found[check_id]
    assert "used by this stack" in found["ports.app"]["message"]
    assert key not in output

    # Migrations behind head: the code gains a migration (as after a `git pull`) that the
    # database has not had yet.
    versions = stack_project.root / "backend" / "migrations" / "versions"
    texts = [path.read_text() for path in versions.glob("*.py")]
    revisions = {m.group(1) for t in texts if (m := re.search(r'^revision[^=]*= "(\w+)"', t, re.MULTILINE))}
    parents = {m.group(1) for t in texts if (m := re.search(r'^down_revision[^=]*= "(\w+)"', t, re.MULTILINE))}
    (head,) = revisions - parents
    newer = versions / "9999_doctor_newer.py"
    newer.write_text(
        f'"""a newer migration"""\nrevision = "9999"\ndown_revision = "{head}"\n\n\n'
        "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
    )
    code, found, _ = doctor(stack_project)
    assert code == 1
    assert found["data.migrations"]["status"] == "fail"
    assert "behind head 9999" in found["data.migrations"]["message"]
    assert found["data.migrations"]["fix"].startswith("montero migrate upgrade")
    assert found["images.app"]["status"] == "warn"  # and the image predates that code
    assert found["images.app"]["fix"].startswith("montero deploy ")  # the stack runs: the zero-downtime path
    newer.unlink()

    # Redis stopped: named, with the command that starts it; --fix starts it (a safe fix).
    assert stack_project.compose("stop", "redis", timeout=120).returncode == 0
    code, found, _ = doctor(stack_project)
    assert code == 1
    assert found["health.redis"]["status"] == "fail" and found["health.redis"]["fix"] == "montero start redis"
    assert found["connect.redis"]["status"] == "fail" and "cannot reach Redis" in found["connect.redis"]["message"]
    fixed = stack_project.run_montero("doctor", "--fix", timeout=180)
    assert "fix health.redis: started redis" in fixed.stderr, fixed.stderr
    ps = stack_project.compose("ps", "--status", "running", "--services")
    assert "redis" in ps.stdout.split()

    # The database corrupted on purpose (app stopped so it cannot rewrite the pages).
    assert stack_project.compose("stop", "app", timeout=120).returncode == 0
    db = stack_project.root / "data" / "mi_sistema.db"
    for sidecar in ("-wal", "-shm"):
        (stack_project.root / "data" / f"mi_sistema.db{sidecar}").unlink(missing_ok=True)
    raw = bytearray(db.read_bytes())
    raw[4096 : 4096 * 3] = os.urandom(4096 * 2)
    db.write_bytes(bytes(raw))
    code, found, _ = doctor(stack_project)
    assert code == 1
    assert found["data.integrity"]["status"] == "fail"
    assert found["data.integrity"]["fix"].startswith("montero restore sqlite --latest")


def test_crash_loop_from_a_bad_setting(stack_project: Any) -> None:
    stack_project.write_env(SECRET_KEY="weakkey123")  # production refuses keys under 32 characters
    done = stack_project.compose("up", "-d", timeout=600)
    assert done.returncode == 0, done.stderr

    def looping() -> bool:
        ps = stack_project.compose("ps", "-a", "--format", "json", "app")
        return "restarting" in ps.stdout.lower() or '"ExitCode":0' not in ps.stdout.replace(" ", "")

    assert _wait(looping, 120), stack_project.logs("app")
    deadline = time.monotonic() + 120
    while True:  # restart counts grow with Docker's back-off: wait for a loop, not a single crash
        code, found, output = doctor(stack_project)
        if found["restarts.app"]["status"] == "fail" or time.monotonic() > deadline:
            break
        time.sleep(3)
    restarts = found["restarts.app"]
    assert code == 1
    assert restarts["status"] == "fail", restarts
    assert "restarting in a loop" in restarts["message"]
    assert "SECRET_KEY" in restarts["message"] and "SECRET_KEY" in restarts["fix"]
    assert restarts["detail"], "the last log lines must be shown"
    assert found["config.secret_key"]["status"] == "fail"
    assert "weakkey123" not in output  # the secret itself never appears


def test_faults_with_the_stack_down(stack_project: Any) -> None:
    root = stack_project.root

    # No Docker at all (a socket that does not exist): said first, docker checks skipped, files still checked.
    done = stack_project.run_montero("doctor", "--json", env={"DOCKER_HOST": "unix:///tmp/montero-no-docker.sock"})
    listed = json.loads(done.stdout)
    assert done.returncode == 1
    assert listed[0]["id"] == "docker.daemon" and listed[0]["status"] == "fail"
    assert "systemctl start docker" in listed[0]["fix"]
    statuses = {f["id"]: f["status"] for f in listed}
    assert statuses["health"] == "skip" and statuses["images.app"] == "skip"
    assert statuses["config.env_file"] == "fail"

    # .env missing.
    code, found, _ = doctor(stack_project)
    assert code == 1
    assert found["config.env_file"]["status"] == "fail" and found["config.env_file"]["fix"] == "montero env init"
    assert found["health.app"]["status"] == "warn" and found["health.app"]["fix"] == "montero up"

    # Weak SECRET_KEY.
    stack_project.write_env(SECRET_KEY="change-me")
    code, found, _ = doctor(stack_project)
    assert found["config.secret_key"]["status"] == "fail"
    assert "secrets.token_hex(32)" in found["config.secret_key"]["fix"]

    # The app's first port held by another process (this test's own process).
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.bind(("0.0.0.0", stack_project.app_ports[0]))
    holder.listen(1)
    try:
        code, found, _ = doctor(stack_project)
    finally:
        holder.close()
    ports = found["ports.app"]
    assert ports["status"] == "fail"
    assert f"port {stack_project.app_ports[0]}" in ports["message"] and f"process {os.getpid()}" in ports["message"]
    assert ports["fix"].startswith(f"kill {os.getpid()}")

    # The data folder owned by root: the app (uid 1000) could not write its database.
    os.chown(root / "data", 0, 0)
    (root / "data").chmod(0o755)
    code, found, _ = doctor(stack_project)
    assert found["connect.data_writable"]["status"] == "fail"
    assert "uid 0" in found["connect.data_writable"]["message"]
    assert found["connect.data_writable"]["fix"] == "sudo chown -R 1000:1000 data logs"


def test_data_folder_owned_by_root_makes_the_app_crash_and_doctor_names_the_chown(stack_project: Any) -> None:
    root = stack_project.root
    stack_project.write_env(SECRET_KEY=secrets.token_hex(32))
    os.chown(root / "data", 0, 0)
    (root / "data").chmod(0o755)
    done = stack_project.compose("up", "-d", timeout=600)
    assert done.returncode == 0, done.stderr

    def restarted() -> bool:
        _, found, _ = doctor(stack_project)
        return found["restarts.app"]["status"] in ("warn", "fail")

    assert _wait(restarted, 150), stack_project.logs("app")
    code, found, _ = doctor(stack_project)
    assert code == 1
    writable = found["connect.data_writable"]
    assert writable["status"] == "fail" and "uid 0" in writable["message"]
    assert writable["fix"] == "sudo chown -R 1000:1000 data logs"
    assert found["restarts.app"]["fix"].startswith("sudo chown -R 1000:1000 data logs"), found["restarts.app"]

    # The chown is not a "safe" fix: applied only when confirmed (--yes), then the restart policy recovers the app.
    fixed = stack_project.run_montero("doctor", "--fix", "--yes", timeout=180)
    assert "fix connect.data_writable: chown -R 1000:1000 data logs" in fixed.stderr, fixed.stderr
    assert (root / "data").stat().st_uid == 1000

    def healthy() -> bool:
        _, found, _ = doctor(stack_project)
        return found["health.app"]["status"] == "pass"

    assert _wait(healthy, 180), stack_project.logs("app")
