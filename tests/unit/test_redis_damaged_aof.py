"""Issue 22 point 5: a damaged Redis AOF, on a real redis-server and the real redis-check-aof.

Garbage in `appendonly.aof.1.incr.aof` stops Redis from loading its files: a normal backup
refuses with Redis's own reason, a restore keeps a raw copy of the damaged files as its safety
backup and goes on (the restore is what rescues such a Redis), the raw copy verifies and puts
back byte for byte; doctor's data.redis_aof runs the real redis-check-aof on the files and reads
Redis's own load warning for a cut file it loaded anyway.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_backup_support import LocalStack, RedisProcess, has_redis

from montero_ops.errors import MonteroError
from montero_ops.project import Project, find_project
from montero_ops.services.backups.create import create_backup
from montero_ops.services.backups.manifest import list_backups, partial_backups, read_manifest, sha256_file
from montero_ops.services.backups.redis_data import LocalRedis, restore_local
from montero_ops.services.backups.restore import plan_restore, run_restore
from montero_ops.services.backups.stack import STOPPED_SNAPSHOT_SCRIPT, run_local
from montero_ops.services.backups.verify import verify_backup

pytestmark = pytest.mark.skipif(not has_redis() or subprocess.run(["which", "redis-check-aof"], check=False,
                                                                  capture_output=True).returncode != 0,
                                reason="redis-server, redis-cli and redis-check-aof are needed")
GARBAGE = b"*3\r\n$3\r\nSET\r\n$1\r\nx\r\ngarbage\x00\x01 not a command\r\n"


@pytest.fixture
def proj(project: Path) -> Project:
    return find_project(project)


def incr_file(data: Path) -> Path:
    return next((data / "appendonlydir").glob("*.incr.aof"))


def damage(data: Path) -> Path:
    target = incr_file(data)
    with open(target, "ab") as fh:
        fh.write(GARBAGE)
    return target


class CrashLooping(LocalStack):
    """A Redis container that Docker keeps restarting: `running` (restarting) but answering nothing."""

    def __init__(self, server: RedisProcess) -> None:
        super().__init__(server)
        self.crashing = True

    def running(self, service: str) -> bool:
        return service == "redis" and (self.crashing or super().running(service))

    def stop(self, services: list[str]) -> None:
        super().stop(services)
        if "redis" in services:
            self.crashing = False

    def redis(self) -> LocalRedis:
        assert self.redis_proc is not None
        return LocalRedis(self.redis_proc.port)  # nothing listens there: redis-cli fails


@pytest.fixture
def damaged(proj: Project, tmp_path: Path) -> dict[str, Any]:
    """A good backup, then more writes, then garbage in the AOF of a stopped Redis."""
    server = RedisProcess(tmp_path / "redis-data", appendonly=True)
    server.start()
    try:
        client = server.client()
        for i in range(100):
            client.set(f"k:{i}", str(i))
        client.set("state", "backed-up")
        folder, _ = create_backup(proj, "redis", LocalStack(server), proj.backups_dir)
        client.set("state", "after the backup")
    finally:
        server.stop()
    target = damage(server.data_dir)
    with pytest.raises(MonteroError) as err:  # what the crash-looping container hits at every start
        run_local(STOPPED_SNAPSHOT_SCRIPT, server.data_dir, tmp_path / "probe")
    assert "Bad file format reading the append only file" in err.value.message
    return {"server": server, "backup": folder, "damaged": target, "damaged_sum": sha256_file(target)}


def test_a_backup_of_a_redis_that_cannot_load_its_aof_refuses_with_redis_own_reason(
        proj: Project, damaged: dict[str, Any]) -> None:
    before = [r.id for r in list_backups(proj.backups_dir)]
    with pytest.raises(MonteroError) as err:
        create_backup(proj, "redis", LocalStack(damaged["server"]), proj.backups_dir)
    assert err.value.message.startswith(
        "cannot back up Redis: throwaway redis container failed: Bad file format reading the append only file "
        "appendonly.aof.1.incr.aof"), err.value.message
    assert "data.redis_aof" in (err.value.hint or "")
    assert [r.id for r in list_backups(proj.backups_dir)] == before
    assert partial_backups(proj.backups_dir) == []


@pytest.mark.parametrize("state", ["crash-looping", "stopped"])
def test_restore_rescues_a_redis_with_a_damaged_aof_keeping_a_raw_safety_copy(
        proj: Project, damaged: dict[str, Any], state: str) -> None:
    server: RedisProcess = damaged["server"]
    stack = CrashLooping(server) if state == "crash-looping" else LocalStack(server)
    said: list[str] = []
    result = run_restore(plan_restore(proj, "redis", damaged["backup"], proj.backups_dir), proj, stack,
                         proj.backups_dir, progress=said.append)
    raw_line = next(line for line in said if line.startswith("Redis cannot load its data ("))
    assert raw_line.endswith("the safety backup keeps its files as they are (raw copy)"), said
    # Redis's own reason, never 'Container <id> is restarting'.
    assert "Bad file format reading the append only file appendonly.aof.1.incr.aof" in raw_line
    if state == "stopped":
        assert stack.events == []  # it was not running: nothing stopped, nothing started
        server.start()
    else:
        assert stack.events == ["stop redis", "start redis"]
    try:
        client = server.client()
        assert client.get("state") == "backed-up"
        assert client.dbsize() == 101
    finally:
        server.stop()
    # The safety backup is the damaged files, byte for byte, and it verifies.
    assert result.safety_backup is not None
    safety = proj.backups_dir / result.safety_backup
    manifest = read_manifest(safety)
    assert manifest.label == "safety" and manifest.redis is not None
    assert manifest.redis["raw"] is True and manifest.redis["persistence"] == "aof"
    assert sha256_file(safety / "redis" / "appendonlydir" / damaged["damaged"].name) == damaged["damaged_sum"]
    checked = verify_backup(safety)
    assert checked.ok, checked.problems
    assert partial_backups(proj.backups_dir) == []


def test_the_raw_safety_copy_puts_the_files_back_exactly(proj: Project, damaged: dict[str, Any],
                                                         tmp_path: Path) -> None:
    server: RedisProcess = damaged["server"]
    result = run_restore(plan_restore(proj, "redis", damaged["backup"], proj.backups_dir), proj,
                         CrashLooping(server), proj.backups_dir)
    server.stop()
    assert result.safety_backup is not None
    safety = proj.backups_dir / result.safety_backup
    # The undo the restore names: `montero restore redis SAFETY --yes` runs this same script.
    restore_local(safety / "redis", server.data_dir, aof=True, raw=True)
    assert sha256_file(incr_file(server.data_dir)) == damaged["damaged_sum"]
    with pytest.raises(MonteroError, match="Bad file format"):
        run_local(STOPPED_SNAPSHOT_SCRIPT, server.data_dir, tmp_path / "probe")
    assert sorted(p.name for p in server.data_dir.iterdir() if p.name.startswith(".montero")) == []


def test_verify_still_catches_a_changed_raw_copy(proj: Project, damaged: dict[str, Any]) -> None:
    result = run_restore(plan_restore(proj, "redis", damaged["backup"], proj.backups_dir), proj,
                         CrashLooping(damaged["server"]), proj.backups_dir)
    damaged["server"].stop()
    assert result.safety_backup is not None
    copy = proj.backups_dir / result.safety_backup / "redis" / "appendonlydir" / damaged["damaged"].name
    with open(copy, "ab") as fh:
        fh.write(b"x")
    checked = verify_backup(proj.backups_dir / result.safety_backup)
    assert not checked.ok
    assert checked.problems[0].startswith(f"redis/appendonlydir/{copy.name} is ")
