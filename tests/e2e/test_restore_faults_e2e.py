"""Issue 22 point 11 on the real engine: backup/restore fault paths, one stack shared by the scenarios.

One stack (module scope, to keep CI time down) with a Redis password, as `montero env init`
makes it. In order:

1. `kill -9` of a real `montero restore all` while it puts Redis back (the SQLite swap done):
   the journal `.montero/restore.json` is left, doctor and the next command name it, and the
   command they give finishes it: every table and the Redis key as in the backup.
2. A concurrent `montero backup` while a real restore runs: refused by the project lock with
   who holds it, exit 6, nothing written; the restore then finishes.
3. A damaged AOF (garbage in `appendonly.aof.1.incr.aof`) after `montero stop`: `montero up`
   fails in bounded time with Redis's own line (not a hang, not the app's stale logs), doctor
   names the damaged file and the fix, `montero backup redis` refuses with Redis's reason, and
   `montero restore redis --latest` rescues it, keeping the damaged files as a raw safety
   backup that verifies.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from montero_ops.services.backups import sqlite_db

pytestmark = pytest.mark.e2e
UP_BOUND = "300"
REDIS_CLI = '[ -z "$REDIS_PASSWORD" ] || export REDISCLI_AUTH="$REDIS_PASSWORD"; exec redis-cli "$@"'


def ok(done: subprocess.CompletedProcess[str], stack: Any = None) -> subprocess.CompletedProcess[str]:
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-4000:], stack.logs() if stack else "")
    return done


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error: ")]


def redis_cli(stack: Any, *args: str) -> str:
    """redis-cli in the Redis container, authenticated like its healthcheck (redis-cli exits 0 on
    NOAUTH: the reply is checked)."""
    done = ok(stack.compose("exec", "-T", "redis", "sh", "-c", REDIS_CLI, "redis-cli", *args), stack)
    reply = done.stdout.strip()
    assert not reply.startswith(("NOAUTH", "ERR", "WRONGPASS")), reply
    return str(reply)


def api(url: str, method: str = "GET", body: dict[str, Any] | None = None,
        token: str | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


def montero_popen(stack: Any, *args: str) -> subprocess.Popen[str]:
    """The real montero in the background (its pid is the one the journal and the lock record)."""
    return subprocess.Popen([sys.executable, "-m", "montero_ops", "--project-dir", str(stack.root), *args],
                            cwd=stack.root, env=stack.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def journal(stack: Any) -> dict[str, Any] | None:
    try:
        return dict(json.loads((stack.root / ".montero" / "restore.json").read_text()))
    except (OSError, ValueError):
        return None  # not there, or being replaced this instant


def wait_for(what: str, check: Any, proc: subprocess.Popen[str], timeout: float = 300) -> Any:
    """Poll an observable state (not a sleep); fail with the process's output if it ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"montero ended (exit {proc.returncode}) before {what}:\n{out}\n{err}")
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no {what} within {timeout} s")


def volume_users(volume: str) -> list[str]:
    done = subprocess.run(["docker", "ps", "-q", "--filter", f"volume={volume}"], capture_output=True, text=True,
                          check=False, timeout=60)
    return done.stdout.split()


def leftovers(stack: Any) -> list[str]:
    data = [p.name for p in (stack.root / "data").iterdir() if ".restore-" in p.name]
    return data + [p.name for p in (stack.root / "backups").iterdir() if p.name.startswith(".partial-")]


def regular_backups(stack: Any) -> list[str]:
    listed = json.loads(ok(stack.run_montero("backups", "list", "--json")).stdout)
    return [b["id"] for b in listed if b.get("label") != "safety"]


@pytest.fixture(scope="module")
def shop(module_stack_project: Any) -> Iterator[Any]:
    stack = module_stack_project
    stack.write_env(SECRET_KEY=secrets.token_hex(32), REDIS_PASSWORD=secrets.token_hex(16))
    ok(stack.run_montero("up", "--timeout", UP_BOUND, timeout=600), stack)
    password = "e2e-" + secrets.token_hex(8)
    ok(stack.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email", "ops@example.com",
                     "--password", password, "--name", "Ops"), stack)
    status, login = api(f"{stack.url('')}/api/auth/login", "POST", {"email": "ops@example.com", "password": password})
    assert status == 200, login
    stack.token = login["token"]
    for i in range(30):
        assert api(f"{stack.url('')}/api/clients", "POST", {"name": f"Cliente {i}", "nit": f"900{i:06d}"},
                   stack.token)[0] == 201
    yield stack


def backup_now(stack: Any, what: str = "all") -> dict[str, Any]:
    manifest = json.loads(ok(stack.run_montero("backup", what, "--json"), stack).stdout)
    return dict(manifest)


def test_kill_9_during_a_real_restore_is_named_then_finished_by_the_command_given(shop: Any) -> None:
    stack = shop
    redis_cli(stack, "SET", "fault:marker", "backed-up")
    manifest = backup_now(stack)
    backup_id = manifest["id"]
    backed_up = sqlite_db.table_checksums(stack.root / "backups" / backup_id / "mi_sistema.db")
    # Change both stores after the backup.
    assert api(f"{stack.url('')}/api/clients", "POST", {"name": "After", "nit": "700000001"}, stack.token)[0] == 201
    redis_cli(stack, "SET", "fault:marker", "after the backup")
    db = stack.root / "data" / "mi_sistema.db"
    assert sqlite_db.table_checksums(db) != backed_up

    proc = montero_popen(stack, "restore", "all", backup_id, "--yes")
    # Killed while Redis's files are being put back: the database is already the backup's.
    wait_for("the journal at step 'redis'", lambda: (journal(stack) or {}).get("step") == "redis", proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # The throwaway container montero had started finishes on its own: wait for it, not for a time.
    volume = f"{stack.name}_redis-data"
    deadline = time.monotonic() + 120
    while volume_users(volume) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert volume_users(volume) == []
    left = journal(stack)
    assert left is not None and left["step"] == "redis" and left["pid"] == proc.pid, left

    report = stack.run_montero("doctor", "--json", timeout=300)
    found = {f["id"]: f for f in json.loads(report.stdout)}["data.restore"]
    assert found["status"] == "fail", found
    assert found["message"].startswith(f"an interrupted restore: sqlite+redis from {backup_id} (pid {proc.pid}, "), found
    assert "stopped at step 'redis'" in found["message"]
    assert f"the database is the backup's ({backup_id}, checksum as staged)" in found["message"]
    assert found["fix"].startswith(f"montero restore all {backup_id} --yes   # finishes the restore"), found

    # The fix, exactly as given: it names the interrupted restore first, then finishes it.
    fix = shlex.split(found["fix"].split("#")[0])
    assert fix[0] == "montero"
    done = ok(stack.run_montero(*fix[1:], timeout=600), stack)
    said = [line[2:] for line in done.stderr.splitlines() if line.startswith("! ")]
    assert said and said[0].startswith(f"an interrupted restore: sqlite+redis from {backup_id} (pid {proc.pid}"), said
    assert "restored sqlite+redis" in done.stderr, done.stderr
    assert sqlite_db.table_checksums(db) == backed_up
    assert redis_cli(stack, "GET", "fault:marker") == "backed-up"
    assert journal(stack) is None and leftovers(stack) == []
    status, body = stack.wait_http("/health", timeout=120)
    assert status == 200, body
    after = stack.run_montero("doctor", "--json", timeout=300)
    assert {f["id"]: f for f in json.loads(after.stdout)}["data.restore"]["status"] == "pass"


def test_a_backup_during_a_real_restore_is_refused_exit_6_then_the_restore_finishes(shop: Any) -> None:
    stack = shop
    manifest = backup_now(stack, "sqlite")
    before = regular_backups(stack)
    proc = montero_popen(stack, "restore", "sqlite", manifest["id"], "--yes")
    try:
        # The restore holds the lock from before its journal exists until after it is removed.
        wait_for("the restore's journal", lambda: journal(stack) is not None, proc)
        started = time.monotonic()
        refused = stack.run_montero("backup", env={"MONTERO_LOCK_WAIT": "1"}, timeout=120)
        assert refused.returncode == 6, (refused.stdout, refused.stderr)
        assert time.monotonic() - started < 60
        line = errors(refused.stderr)
        assert len(line) == 1 and line[0].startswith(f"Error: a restore is running (pid {proc.pid}, started at "), \
            refused.stderr
        assert line[0].endswith("; waited 1 s, nothing was changed"), line
        assert "Traceback" not in refused.stderr and "Container" not in refused.stderr
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert regular_backups(stack) == before  # the refused backup wrote nothing
    assert journal(stack) is None and leftovers(stack) == []
    status, body = stack.wait_http("/health", timeout=120)
    assert status == 200, body


def damage_aof(stack: Any) -> str:
    """Garbage appended to the incremental AOF, in the volume, by a throwaway container."""
    volume, image = f"{stack.name}_redis-data", stack.env["MONTERO_REDIS_IMAGE"]
    script = ('f=$(ls /data/appendonlydir/*.incr.aof | tail -n 1); printf "garbage\\001 not a command\\r\\n" >> "$f"; '
              'echo "${f##*/}"')
    done = subprocess.run(["docker", "run", "--rm", "--network", "none", "--user", "0", "--entrypoint", "sh",
                           "-v", f"{volume}:/data", image, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_damaged_aof_up_fails_fast_doctor_names_it_and_restore_rescues_it(shop: Any) -> None:
    stack = shop
    redis_cli(stack, "SET", "aof:marker", "backed-up")
    backup_now(stack, "redis")
    redis_cli(stack, "SET", "aof:marker", "lost with the damage")
    ok(stack.run_montero("stop"), stack)
    damaged = damage_aof(stack)
    assert damaged.endswith(".incr.aof")

    # up: Redis's own reason, in bounded time (it crash-loops: never a hang).
    started = time.monotonic()
    up = stack.run_montero("up", "--timeout", "120", timeout=400)
    took = time.monotonic() - started
    assert up.returncode == 1, (up.stdout, up.stderr)
    assert took < 300, took
    assert "Bad file format reading the append only file" in up.stderr, up.stderr[-3000:]
    assert errors(up.stderr), up.stderr[-2000:]
    assert "Traceback" not in up.stderr

    # doctor: the damaged file, where its valid part ends, the fix.
    report = stack.run_montero("doctor", "--json", timeout=300)
    finding = {f["id"]: f for f in json.loads(report.stdout)}["data.redis_aof"]
    assert finding["status"] == "fail", finding
    assert finding["message"].startswith(f"Redis's append-only file is damaged: {damaged} is valid only up to byte ")
    assert finding["fix"].startswith("montero restore redis --latest --yes")
    assert "redis-check-aof --fix /data/appendonlydir/" in finding["fix"]

    # A normal backup refuses with Redis's reason and keeps nothing.
    before = regular_backups(stack)
    refused = stack.run_montero("backup", "redis", env={"COLUMNS": "400"})
    assert refused.returncode == 1, refused.stderr
    line = errors(refused.stderr)
    assert len(line) == 1 and line[0].startswith("Error: cannot back up Redis: "), refused.stderr
    assert "Bad file format reading the append only file" in line[0], line
    assert regular_backups(stack) == before and leftovers(stack) == []

    # The restore rescues it: the damaged files are kept raw as its safety backup.
    done = ok(stack.run_montero("restore", "redis", "--latest", "--yes", env={"COLUMNS": "400"}, timeout=600),
              stack)
    raw = [line for line in done.stderr.splitlines() if line.startswith("Redis cannot load its data (")]
    assert raw and raw[0].endswith("the safety backup keeps its files as they are (raw copy)"), done.stderr
    assert "Bad file format reading the append only file" in raw[0] and "Container" not in raw[0], raw
    assert redis_cli(stack, "GET", "aof:marker") == "backed-up"
    listed = json.loads(ok(stack.run_montero("backups", "list", "--json")).stdout)
    safety = [b["id"] for b in listed if b.get("label") == "safety"][-1]
    manifest = json.loads((stack.root / "backups" / safety / "manifest.json").read_text())
    assert manifest["redis"]["raw"] is True
    assert any(f["name"] == f"redis/appendonlydir/{damaged}" for f in manifest["files"])
    ok(stack.run_montero("backups", "verify", safety))
    ok(stack.run_montero("up", "--timeout", UP_BOUND, timeout=600), stack)
    report = stack.run_montero("doctor", "--json", timeout=300)
    findings = {f["id"]: f for f in json.loads(report.stdout)}
    assert findings["data.redis_aof"]["status"] == "pass", findings["data.redis_aof"]
    assert leftovers(stack) == [] and journal(stack) is None


def test_ctrl_c_while_a_real_restore_starts_the_stack_says_what_it_left_and_exits_130(shop: Any) -> None:
    """The issue's point 3 repro on the real engine: Ctrl-C reaches the whole foreground process
    group, `docker compose start` included, while the restore waits for the stack to come back.
    It printed python-on-whales' command line ('restore failed: The command executed was
    …docker compose --file … start redis app'); it must say what it left and exit 130."""
    stack = shop
    ok(stack.run_montero("up", "--timeout", UP_BOUND, timeout=600), stack)
    manifest = backup_now(stack, "sqlite")
    assert api(f"{stack.url('')}/api/clients", "POST", {"name": "After Ctrl-C", "nit": "700000002"}, stack.token)[0] == 201
    db = stack.root / "data" / "mi_sistema.db"
    current = sqlite_db.table_checksums(db)
    # As at a terminal, SIGINT starts with its default action: under a background job (`cmd &` in a
    # script, nohup) it arrives ignored, and montero and compose would keep ignoring it.
    as_at_a_terminal = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
                        "os.execv(sys.executable, [sys.executable, '-m', 'montero_ops', *sys.argv[1:]])")
    proc = subprocess.Popen([sys.executable, "-c", as_at_a_terminal, "--project-dir", str(stack.root), "restore",
                             "sqlite", manifest["id"], "--yes"], cwd=stack.root, env={**stack.env, "COLUMNS": "400"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for("the journal at step 'starting'", lambda: (journal(stack) or {}).get("step") == "starting", proc)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
        _, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err[-3000:]
    line = errors(err)
    assert len(line) == 1, err[-3000:]
    assert line[0].startswith("Error: restore failed: interrupted (Ctrl-C); the data from before the restore was put "
                              "back (safety backup "), line
    assert "The command executed was" not in err and "docker compose --file" not in err and "Traceback" not in err
    # What it said is what it left: the data from before the restore, no journal, no leftovers.
    assert sqlite_db.table_checksums(db) == current
    assert journal(stack) is None and leftovers(stack) == []
    ok(stack.run_montero("up", "--timeout", UP_BOUND, timeout=600), stack)
    assert stack.wait_http("/health", timeout=120)[0] == 200


def test_a_full_backups_disk_during_a_real_redis_backup_is_named(shop: Any, tmp_path: Any) -> None:
    """Issue 22 point 1 for Redis: its files leave the container through `docker cp`, whose ENOSPC
    was docker's own text ('write …/dump.rdb: no space left on device'), not the one line naming
    the full backups folder; nothing partial may be left either. A real 1 MB tmpfs, filled."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    stack = shop
    ok(stack.run_montero("up", "--timeout", UP_BOUND, timeout=600), stack)
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={small}/filler", "bs=4k"], capture_output=True, check=False)
        done = stack.run_montero("backup", "redis", "--dir", str(small), env={"COLUMNS": "400"}, timeout=300)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert errors(done.stderr) == [
            f"Error: the backups folder {small} is full (no space left on its disk); nothing was kept"], done.stderr
        assert "Traceback" not in done.stderr and "unexpected error" not in done.stderr
        assert sorted(p.name for p in small.iterdir()) == ["filler"]  # no .partial-*, no backup
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)
