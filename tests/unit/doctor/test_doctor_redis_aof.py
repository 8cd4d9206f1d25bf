"""Check data.redis_aof on real Redis files and the real redis-check-aof (issue 22 point 5).

Only the docker CLI is answered here: `docker run … redis-check-aof` runs the check's own
script on this machine, on a folder a real redis-server wrote (then damaged, or cut).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from doctor_helpers import DoctorEngine
from test_backup_support import RedisProcess, has_redis

from montero_ops.project import find_project
from montero_ops.services.doctor import redis_aof
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Status

pytestmark = pytest.mark.skipif(not has_redis() or subprocess.run(["which", "redis-check-aof"], check=False,
                                                                  capture_output=True).returncode != 0,
                                reason="redis-server, redis-cli and redis-check-aof are needed")
GARBAGE = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\ngarbage\x00\x01 not a command\r\n"


def incr_file(data: Path) -> Path:
    return next((data / "appendonlydir").glob("*.incr.aof"))


CONFIG = {"services": {"redis": {"image": "redis:7-alpine",
                                 "volumes": [{"type": "volume", "source": "redis-data", "target": "/data"}]}},
          "volumes": {"redis-data": {"name": "shop_redis-data"}}}


def aof_dir(tmp_path: Path, keys: int = 50) -> Path:
    """A real Redis data folder with an AOF: redis-server wrote it, then shut down."""
    server = RedisProcess(tmp_path / "aof", appendonly=True)
    server.start()
    try:
        client = server.client()
        for i in range(keys):
            client.set(f"k:{i}", "v" * 20)
    finally:
        server.stop()
    return server.data_dir


def doctor_ctx(root: Path, data: Path, monkeypatch: pytest.MonkeyPatch, engine: Any = None) -> Any:
    """The docker CLI answered on this machine: the check's script runs here on `data`."""
    calls: list[list[str]] = []

    def run_cmd(cmd: list[str], timeout: float) -> tuple[int, str, str]:
        calls.append(cmd)
        if cmd[:3] == ["docker", "volume", "inspect"]:
            return 0, cmd[-1] + "\n", ""
        assert cmd[:2] == ["docker", "run"] and "shop_redis-data:/data:ro" in cmd and "--network" in cmd
        done = subprocess.run(["sh", "-c", cmd[-1]], capture_output=True, text=True, timeout=timeout,
                              env={"PATH": "/usr/bin:/bin:/usr/local/bin", "DATA": str(data)}, check=False)
        return done.returncode, done.stdout, done.stderr

    monkeypatch.setattr(redis_aof, "run_cmd", run_cmd)
    ctx = Context(find_project(root), timeout=20.0, engine=engine)
    ctx._cache["compose_config"] = CONFIG
    ctx._cache["containers"] = []
    ctx.calls = calls  # type: ignore[attr-defined]
    return ctx


def test_doctor_passes_a_whole_aof(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = doctor_ctx(root, aof_dir(tmp_path), monkeypatch)
    [finding] = redis_aof.check_redis_aof(ctx)
    assert (finding.status, finding.message) == (Status.PASS, "Redis's append-only file is valid (redis-check-aof)")


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_doctor_names_a_damaged_aof_and_the_fix(root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               how: str) -> None:
    data = aof_dir(tmp_path)
    target = incr_file(data)
    size = target.stat().st_size
    if how == "garbage":
        with open(target, "ab") as fh:
            fh.write(GARBAGE)
    else:
        with open(target, "r+b") as fh:
            fh.truncate(size - 7)  # the last command cut in half, as a crash mid-write leaves it
    ctx = doctor_ctx(root, data, monkeypatch)
    [finding] = redis_aof.check_redis_aof(ctx)
    assert finding.status is Status.FAIL
    now = target.stat().st_size
    assert finding.message.startswith(
        f"Redis's append-only file is damaged: {target.name} is valid only up to byte ")
    assert f" of {now} (redis-check-aof)" in finding.message
    valid = int(finding.message.split("up to byte ")[1].split()[0])
    assert valid <= (size if how == "garbage" else now) and valid > 0
    assert finding.fix.startswith("montero restore redis --latest --yes   # the damaged files are kept as a raw "
                                  "safety backup")
    assert finding.fix.endswith("docker run --rm -it --user redis -v shop_redis-data:/data redis:7-alpine "
                                "redis-check-aof --fix /data/appendonlydir/appendonly.aof.manifest")
    assert finding.detail and "is not valid" in finding.detail[0]


def test_doctor_without_an_aof_and_without_a_volume(root: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    ctx = doctor_ctx(root, empty, monkeypatch)
    [finding] = redis_aof.check_redis_aof(ctx)
    assert finding.status is Status.PASS and "no append-only file" in finding.message
    monkeypatch.setattr(redis_aof, "run_cmd", lambda cmd, timeout: (1, "", "Error: No such volume"))
    [finding] = redis_aof.check_redis_aof(ctx)
    assert finding.status is Status.SKIP and "no Redis volume shop_redis-data yet" in finding.message


def test_doctor_reads_redis_own_warning_about_a_cut_aof_it_loaded(root: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A cut AOF is loaded anyway and repaired by dropping the tail: the file is valid again, so only
    Redis's log of that start says keys were lost. Its real log is read here."""
    data = aof_dir(tmp_path)
    target = incr_file(data)
    with open(target, "r+b") as fh:
        fh.truncate(target.stat().st_size - 7)
    log = tmp_path / "redis.log"
    proc = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", str(tmp_path / "r.sock"), "--dir",
                             str(data), "--appendonly", "yes", "--logfile", str(log)])
    try:
        deadline = time.monotonic() + 20
        while "ready to accept connections" not in (log.read_text().lower() if log.exists() else ""):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text() if log.exists() else ""
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    engine = DoctorEngine()
    engine.add("redis", logs="earlier start without trouble\n" + log.read_text())
    ctx = doctor_ctx(root, data, monkeypatch, engine=engine)
    ctx._cache.pop("containers")
    findings = {f.id: f for f in redis_aof.check_redis_aof(ctx)}
    assert findings["data.redis_aof"].status is Status.PASS  # Redis cut the file: it is valid again
    load = findings["data.redis_aof_load"]
    assert load.status is Status.WARN
    assert load.message.startswith(f"at its last start Redis loaded a cut append-only file ({target.name} "
                                   "truncated at byte ")
    assert load.fix.startswith("if they matter, restore the newest backup: montero restore redis --latest --yes")
    # A later clean start is what counts: the warning goes.
    engine.logs[engine.items[0]["Id"]] += "\n1:M 02 Dec 2026 20:00:00.000 * oO0OoO0OoO0Oo Redis is starting oO0OoO0OoO0Oo\n"
    ctx = doctor_ctx(root, data, monkeypatch, engine=engine)
    ctx._cache.pop("containers")
    assert [f.id for f in redis_aof.check_redis_aof(ctx)] == ["data.redis_aof"]
