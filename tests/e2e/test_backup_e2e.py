"""Backups on the real engine: backup while the API writes, damage the data, restore, all back.

Uses the harness in tests/e2e/conftest.py (isolated project, own compose project name,
`down -v` on teardown).
"""

from __future__ import annotations

import json
import secrets
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from montero_ops.services.backups import sqlite_db

pytestmark = [pytest.mark.e2e, pytest.mark.lane2]  # ~4 min: beside the cluster tests (scripts/test.sh)


def api(url: str, method: str = "GET", body: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def redis_cli(stack: Any, *args: str) -> str:
    done = stack.compose("exec", "-T", "redis", "redis-cli", *args)
    assert done.returncode == 0, done.stderr
    return str(done.stdout.strip())


def up(stack: Any) -> None:
    done = stack.compose("up", "-d", "--wait", "--wait-timeout", "240", timeout=400)
    assert done.returncode == 0, done.stderr + stack.logs()


def test_backup_while_writing_then_restore_everything(stack_project: Any) -> None:
    stack = stack_project
    stack.write_env(SECRET_KEY=secrets.token_hex(32))
    up(stack)
    password = "e2e-" + secrets.token_hex(8)
    made = stack.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email", "ops@example.com",
                         "--password", password, "--name", "Ops")
    assert made.returncode == 0, made.stderr
    base = stack.url("")
    status, login = api(f"{base}/api/auth/login", "POST", {"email": "ops@example.com", "password": password})
    assert status == 200, login
    token = login["token"]
    for i in range(40):
        assert api(f"{base}/api/clients", "POST", {"name": f"Cliente {i}", "nit": f"900{i:06d}"}, token)[0] == 201
    redis_cli(stack, "SET", "session:e2e", "kept")
    redis_cli(stack, "SET", "rate:e2e", "7", "EX", "3600")

    # Writers keep inserting through the API while the backup runs.
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        n = 0
        while not stop.is_set():
            code, _ = api(f"{base}/api/clients", "POST", {"name": f"Live {n}", "nit": f"800{n:06d}"}, token)
            written.append(code)
            n += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        done = stack.run_montero("backup", "--json")
    finally:
        stop.set()
        thread.join()
    assert done.returncode == 0, done.stderr
    assert written.count(201) > 0
    manifest = json.loads(done.stdout)
    assert manifest["contents"] == ["sqlite", "redis"] and manifest["project"] == stack.name
    assert manifest["redis"]["persistence"] == "aof"
    folder = stack.root / "backups" / manifest["id"]
    copy = folder / "mi_sistema.db"
    assert sqlite_db.integrity_check(copy) == "ok"
    assert sqlite_db.stats(copy)[1] == manifest["sqlite"]["tables"]
    backed_up = sqlite_db.table_checksums(copy)
    verify = stack.run_montero("backups", "verify", manifest["id"])
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # Change and delete data in both stores.
    status, listing = api(f"{base}/api/clients?per_page=10", token=token)
    assert status == 200
    for client in listing["items"][:5]:
        assert api(f"{base}/api/clients/{client['id']}", "DELETE", token=token)[0] in (200, 204)
    api(f"{base}/api/clients", "POST", {"name": "After backup", "nit": "700000001"}, token)
    redis_cli(stack, "DEL", "session:e2e")
    redis_cli(stack, "SET", "rate:e2e", "99")
    db = stack.root / "data" / "mi_sistema.db"
    assert sqlite_db.table_checksums(db) != backed_up

    done = stack.run_montero("restore", "all", "--latest", "--yes")
    assert done.returncode == 0, done.stderr + stack.logs()
    assert "restored sqlite+redis" in done.stderr
    assert sqlite_db.table_checksums(db) == backed_up
    st = db.stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert redis_cli(stack, "GET", "session:e2e") == "kept"
    assert redis_cli(stack, "GET", "rate:e2e") == "7"
    status, body = stack.wait_http("/health", timeout=60)
    assert status == 200 and json.loads(body)["status"] == "ok", body
    # The restored data is served: the token's session came back with the database.
    base = stack.url("")  # the app was restarted: its port in the published range may differ
    status, listing = api(f"{base}/api/clients?q=cliente%200", token=token)
    assert status == 200 and any(c["nit"] == "900000000" for c in listing["items"])
    # The safety backup holds the state just before the restore.
    listed = json.loads(stack.run_montero("backups", "list", "--json").stdout)
    assert [b["label"] for b in listed].count("safety") == 1


def test_redis_only_round_trip_and_stopped_stack_backup(stack_project: Any) -> None:
    stack = stack_project
    stack.write_env(SECRET_KEY=secrets.token_hex(32))
    up(stack)
    for i in range(200):
        redis_cli(stack, "SET", f"k:{i}", str(i))
    done = stack.run_montero("backup", "redis", "--json")
    assert done.returncode == 0, done.stderr
    redis_cli(stack, "FLUSHALL")
    done = stack.run_montero("restore", "redis", "--latest", "--yes")
    assert done.returncode == 0, done.stderr
    assert redis_cli(stack, "GET", "k:199") == "199"
    assert redis_cli(stack, "DBSIZE").endswith("200")
    # Stack stopped: sqlite from the bind mount, redis from its volume via a throwaway container.
    assert stack.compose("stop", timeout=120).returncode == 0
    done = stack.run_montero("backup", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["redis"]["source"].startswith("volume")
    assert (Path(stack.root) / "backups" / manifest["id"] / "redis" / "dump.rdb").stat().st_size > 0
    assert stack.run_montero("backups", "verify", "--all").returncode == 0


def test_restore_without_docker_refuses_while_the_app_holds_the_database(stack_project: Any) -> None:
    """Issue 22, point 0: the repro of the lost writes. The app runs (its gunicorn workers hold
    the database open), Docker is unreachable for montero: the restore must refuse and change nothing."""
    stack = stack_project
    stack.write_env(SECRET_KEY=secrets.token_hex(32))
    up(stack)
    made = stack.run_montero("backup", "sqlite", "--json")
    assert made.returncode == 0, made.stderr
    db = stack.root / "data" / "mi_sistema.db"
    before = sqlite_db.table_checksums(db)
    backups = sorted(p.name for p in (stack.root / "backups").iterdir())
    refused = stack.run_montero("restore", "sqlite", "--latest", "--yes",
                                env={"DOCKER_HOST": "unix:///tmp/montero-e2e-nonexistent.sock"})
    assert refused.returncode == 1, refused.stderr
    errors = [line for line in refused.stderr.splitlines() if line.startswith("Error: ")]
    assert errors and errors[0].startswith("Error: restore refused: mi_sistema.db is open in pid "), refused.stderr
    assert "gunicorn" in errors[0] and "nothing was changed" in errors[0]
    assert sqlite_db.table_checksums(db) == before
    assert sorted(p.name for p in (stack.root / "backups").iterdir()) == backups  # no safety backup either
    # With Docker reachable montero stops the app itself, and the same restore goes through.
    done = stack.run_montero("restore", "sqlite", "--latest", "--yes")
    assert done.returncode == 0, done.stderr
