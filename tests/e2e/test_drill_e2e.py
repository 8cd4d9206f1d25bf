"""Restore drills and the fresh-host restore, from a real S3 server (SeaweedFS, started by the
`s3` fixture of test_offsite_e2e.py), on the real engine, with one stack for the module:

1. a drill of the newest offsite backup while the running stack serves /health (0 failures),
   which leaves no container or volume behind and shows in `backups list` and `doctor`;
2. a drill of a damaged backup exits 1 and records the failure;
3. the fresh host: the original stack and folder are gone, a new folder with only the code and
   .env gets SQLite *and* Redis back with `restore --from-offsite --latest` then `up`.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_backup_e2e import api, redis_cli, up
from test_offsite_e2e import s3  # noqa: F401  (the SeaweedFS fixture, shared with other modules)

from montero_ops.services.backups import sqlite_db

PASSWORD = "e2e-drill-password-" + secrets.token_hex(6)
pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed (scripts/setup.sh)")


@pytest.fixture(scope="module")
def shop(module_stack_project: Any, s3: dict[str, str]) -> Iterator[dict[str, Any]]:  # noqa: F811
    stack = module_stack_project
    repo = s3["MONTERO_OFFSITE_REPOSITORY"] + f"/drill-{secrets.token_hex(4)}"
    stack.write_env(SECRET_KEY=secrets.token_hex(32), MONTERO_OFFSITE_REPOSITORY=repo,
                    MONTERO_OFFSITE_PASSWORD=PASSWORD, AWS_ACCESS_KEY_ID=s3["AWS_ACCESS_KEY_ID"],
                    AWS_SECRET_ACCESS_KEY=s3["AWS_SECRET_ACCESS_KEY"])
    up(stack)
    password = "e2e-" + secrets.token_hex(8)
    made = stack.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email", "ops@example.com",
                         "--password", password)
    assert made.returncode == 0, made.stderr
    base = stack.url("")
    token = api(f"{base}/api/auth/login", "POST", {"email": "ops@example.com", "password": password})[1]["token"]
    for i in range(25):
        assert api(f"{base}/api/clients", "POST", {"name": f"Cliente {i}", "nit": f"901{i:06d}"}, token)[0] == 201
    redis_cli(stack, "SET", "session:drill", "kept")
    pushed = stack.run_montero("backup", "--push", "--json")
    assert pushed.returncode == 0, pushed.stderr
    data = json.loads(pushed.stdout)
    assert data["offsite"]["bytes_added"] > 0 and PASSWORD not in pushed.stdout + pushed.stderr
    yield {"stack": stack, "backup": data["id"], "db": stack.root / "data" / "mi_sistema.db", "password": password}


def drill_leftovers(name: str) -> list[str]:
    """Containers, volumes and networks of a compose project that are still there."""
    label = f"label=com.docker.compose.project={name}"
    out: list[str] = []
    for cmd in (["ps", "-a"], ["volume", "ls"], ["network", "ls"]):
        out += subprocess.run(["docker", *cmd, "-q", "--filter", label], capture_output=True, text=True,
                              check=False).stdout.split()
    return out


def test_drill_from_s3_while_the_stack_serves(shop: dict[str, Any]) -> None:
    stack = shop["stack"]
    before = stack.compose("ps", "-q").stdout.split()
    stop, codes = threading.Event(), []

    def probe() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(stack.url("/health"), timeout=5) as resp:
                    codes.append(resp.status)
            except OSError:
                codes.append(0)
            time.sleep(0.05)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        done = stack.run_montero("backups", "drill", "--latest", "--offsite", "--json", timeout=900)
    finally:
        stop.set()
        thread.join()
    assert done.returncode == 0, done.stderr + done.stdout
    result = json.loads(done.stdout)
    assert result["ok"] and result["backup"] == shop["backup"] and result["source"].startswith("offsite snapshot")
    assert {c["name"] for c in result["checks"] if c["ok"]} == {
        "verify", "redis.restore", "migrate", "health", "rows", "checksums", "redis", "login", "api"}
    assert result["recovery_seconds"] > 0 and result["cleaned_up"]
    # The running stack kept serving, untouched; nothing of the throwaway project is left.
    assert len(codes) > 20 and codes.count(200) == len(codes), codes
    assert stack.compose("ps", "-q").stdout.split() == before
    assert drill_leftovers(result["project"]) == []
    assert not [p for p in (stack.root / ".montero").glob("drill-*")]
    assert PASSWORD not in done.stdout + done.stderr
    # The evidence: next to the backup, in `backups list`, and for doctor.
    listed = {b["id"]: b for b in json.loads(stack.run_montero("backups", "list", "--json").stdout)}
    assert listed[shop["backup"]]["drill"]["ok"] is True
    doctor = json.loads(stack.run_montero("doctor", "--json").stdout)
    findings = doctor if isinstance(doctor, list) else doctor.get("findings", doctor.get("checks", []))
    finding = next(f for f in findings if f["id"] == "backups.drill")
    assert finding["status"] == "pass", finding


def test_a_failed_drill_exits_1_and_is_recorded(shop: dict[str, Any]) -> None:
    stack = shop["stack"]
    damaged = stack.root / "backups" / f"{shop['backup']}-damaged"
    shutil.copytree(stack.root / "backups" / shop["backup"], damaged)
    manifest = json.loads((damaged / "manifest.json").read_text())
    manifest["id"] = damaged.name
    (damaged / "manifest.json").write_text(json.dumps(manifest))
    with open(damaged / "mi_sistema.db", "r+b") as fh:
        fh.seek(8192)
        fh.write(b"\xff" * 64)
    done = stack.run_montero("backups", "drill", damaged.name)
    assert done.returncode == 1
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")] == [
        f"Error: drill of {damaged.name} failed: backup {damaged.name} does not verify"]
    record = json.loads((stack.root / "backups" / ".drills" / f"{damaged.name}.json").read_text())
    assert record["ok"] is False and record["cleaned_up"]
    shutil.rmtree(damaged)


def test_fresh_host_gets_sqlite_and_redis_back_from_s3(shop: dict[str, Any], tmp_path: Path) -> None:
    stack = shop["stack"]
    want = sqlite_db.table_checksums(shop["db"])
    # The machine is lost: its stack, volumes, ./data and ./backups are gone.
    assert stack.compose("down", "-v", "--timeout", "5").returncode == 0
    fresh = tmp_path / "new-host"
    fresh.mkdir()
    for part in ("docker", "backend", ".env"):
        src = stack.root / part
        (shutil.copytree(src, fresh / part) if src.is_dir() else shutil.copy2(src, fresh / part))
    shutil.rmtree(stack.root / "data")
    shutil.rmtree(stack.root / "backups")
    assert not (fresh / "data").exists() and not (fresh / "backups").exists()
    root = stack.root
    stack.root = fresh  # the same compose project name: the new host's clone of the same project
    # A new machine has no restic cache either: everything comes from S3.
    new_machine = {"RESTIC_CACHE_DIR": str(tmp_path / "empty-restic-cache")}
    try:
        done = stack.run_montero("restore", "--from-offsite", "--latest", "--yes", env=new_machine)
        assert done.returncode == 0, done.stderr
        assert "restored sqlite+redis" in done.stderr
        assert (fresh / "backups" / shop["backup"] / "manifest.json").is_file()  # fetched, verified, kept
        started = stack.run_montero("up")
        assert started.returncode == 0, started.stderr
        assert sqlite_db.table_checksums(fresh / "data" / "mi_sistema.db") == want
        assert redis_cli(stack, "GET", "session:drill") == "kept"
        assert stack.wait_http("/health")[0] == 200
        # The restored data serves: the same admin logs in and reads the same 25 clients.
        base = stack.url("")
        status, body = api(f"{base}/api/auth/login", "POST", {"email": "ops@example.com", "password": shop["password"]})
        assert status == 200, (status, body)
        token = body["token"]
        status, body = api(f"{base}/api/clients?per_page=100", "GET", None, token)
        assert status == 200, body
        names = sorted(c["name"] for c in (body["items"] if isinstance(body, dict) else body))
        assert names == sorted(f"Cliente {i}" for i in range(25))
    finally:
        stack.root = root
