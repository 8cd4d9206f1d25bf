"""The backup service on real SQLite files and a real redis-server (no Docker)."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import time
from pathlib import Path

import pytest
from test_backup_support import (
    LocalStack,
    RedisProcess,
    digest,
    has_redis,
    make_db,
    make_migrations,
)

from montero_ops.project import Project
from montero_ops.services.backups import (
    create_backup,
    list_backups,
    plan_prune,
    plan_restore,
    run_restore,
    sqlite_db,
    verify_backup,
)
from montero_ops.services.backups.stack import NoStack

needs_redis = pytest.mark.skipif(not has_redis(), reason="redis-server/redis-cli not installed on this machine")


@pytest.fixture
def proj(tmp_path: Path) -> Project:
    root = tmp_path / "shop"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text("services: {}\n")
    make_migrations(root)
    return Project(root=root, name="shop", env_file=root / ".env", compose_files=(root / "docker" / "compose.yml",))


def _writer(db: str, stop_at: float, worker: int) -> None:
    """One order and its item per transaction: a consistent snapshot has equal counts."""
    con = sqlite3.connect(db, timeout=30)
    n = 0
    while time.time() < stop_at:
        payload = f"w{worker}-{n}-" + "y" * 300
        with con:
            cur = con.execute("INSERT INTO orders (payload, digest) VALUES (?, ?)", (payload, digest(payload)))
            con.execute("INSERT INTO order_items (order_id, qty) VALUES (?, ?)", (cur.lastrowid, n % 5))
        n += 1
    con.close()


def test_backup_while_writers_insert_is_consistent(proj: Project) -> None:
    db = make_db(proj.data_dir / "mi_sistema.db", rows=20000)
    ctx = multiprocessing.get_context("spawn")
    stop_at = time.time() + 6
    writers = [ctx.Process(target=_writer, args=(str(db), stop_at, w)) for w in range(2)]
    for w in writers:
        w.start()
    time.sleep(1.0)  # writers are running
    results = []
    while time.time() < stop_at - 0.5:
        results.append(create_backup(proj, "sqlite", NoStack(), proj.backups_dir))
    for w in writers:
        w.join()
    assert len(results) >= 2
    for folder, manifest in results:
        copy = folder / "mi_sistema.db"
        assert sqlite_db.integrity_check(copy) == "ok"
        revision, counts = sqlite_db.stats(copy)
        assert counts == manifest.sqlite["tables"]  # type: ignore[index]
        assert revision == "bbb2"
        assert counts["orders"] == counts["order_items"]  # no half transaction
        con = sqlite3.connect(copy)
        bad = [r for r in con.execute("SELECT payload, digest FROM orders") if digest(r[0]) != r[1]]
        con.close()
        assert bad == []  # every row is whole
        assert verify_backup(folder).ok
    # The counts grew between backups: the writers really were writing during them.
    assert results[-1][1].sqlite["tables"]["orders"] > results[0][1].sqlite["tables"]["orders"]  # type: ignore[index]


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_restores_every_row(proj: Project, compress: bool) -> None:
    db = make_db(proj.data_dir / "mi_sistema.db", rows=3000)
    before = sqlite_db.table_checksums(db)
    folder, _ = create_backup(proj, "sqlite", NoStack(), proj.backups_dir, compress=compress)
    assert (folder / ("mi_sistema.db.gz" if compress else "mi_sistema.db")).is_file()
    data = json.loads((folder / "manifest.json").read_text())
    assert data["project"] == "shop" and data["sqlite"]["revision"] == "bbb2"
    assert data["sqlite"]["tables"] == {"alembic_version": 1, "orders": 3000, "order_items": 3000}
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM orders WHERE id % 3 = 0")
        con.execute("UPDATE order_items SET qty = qty + 100")
    con.close()
    assert sqlite_db.table_checksums(db) != before
    plan = plan_restore(proj, "sqlite", folder, proj.backups_dir)
    result = run_restore(plan, proj, NoStack(), proj.backups_dir)
    assert sqlite_db.table_checksums(db) == before
    assert sqlite_db.integrity_check(db) == "ok"
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    # The safety backup holds the changed data, in case the restore was the mistake.
    assert result.safety_backup is not None
    safety = proj.backups_dir / result.safety_backup
    assert verify_backup(safety).ok
    assert json.loads((safety / "manifest.json").read_text())["label"] == "safety"


def test_restore_keeps_owner_and_mode(proj: Project) -> None:
    if os.getuid() != 0:
        pytest.skip("changing ownership needs root")
    db = make_db(proj.data_dir / "mi_sistema.db", rows=10)
    folder, _ = create_backup(proj, "sqlite", NoStack(), proj.backups_dir)
    os.chown(proj.data_dir, 1000, 1000)
    os.chown(db, 1000, 1000)
    os.chmod(db, 0o640)
    run_restore(plan_restore(proj, "sqlite", folder, proj.backups_dir), proj, NoStack(), proj.backups_dir)
    st = db.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1000, 1000, 0o640)


def test_backup_does_not_leave_root_owned_wal_files(proj: Project) -> None:
    """The app runs as uid 1000: -wal/-shm created by a root backup must not lock it out."""
    if os.getuid() != 0:
        pytest.skip("needs root")
    db = make_db(proj.data_dir / "mi_sistema.db", rows=10)
    os.chown(db, 1000, 1000)
    app = sqlite3.connect(db)  # the "app" holds the database open: -wal/-shm stay
    app.execute("SELECT 1").fetchall()
    for side in ("-wal", "-shm"):
        if Path(f"{db}{side}").exists():
            os.chown(f"{db}{side}", 1000, 1000)
    create_backup(proj, "sqlite", NoStack(), proj.backups_dir)
    for side in ("-wal", "-shm"):
        path = Path(f"{db}{side}")
        if path.exists():
            assert path.stat().st_uid == 1000
    app.close()


def test_restore_of_older_revision_is_flagged_for_migration(proj: Project) -> None:
    make_db(proj.data_dir / "mi_sistema.db", rows=5, revision="aaa1")
    folder, _ = create_backup(proj, "sqlite", NoStack(), proj.backups_dir)
    plan = plan_restore(proj, "sqlite", folder, proj.backups_dir)
    assert plan.needs_migration and plan.heads == {"bbb2"}
    result = run_restore(plan, proj, NoStack(), proj.backups_dir)
    assert any("older than head bbb2" in n for n in result.notes)


class FailingStart(NoStack):
    """The app comes back unhealthy after the swap: the safety backup must go back."""

    def __init__(self) -> None:
        self.starts = 0

    def running(self, service: str) -> bool:
        return service == "app"

    def start(self, services: list[str]) -> None:
        from montero_ops.errors import MonteroError

        self.starts += 1
        if self.starts == 1:
            raise MonteroError("app not healthy after 180 s")


def test_failed_start_puts_the_safety_backup_back(proj: Project) -> None:
    db = make_db(proj.data_dir / "mi_sistema.db", rows=500)
    folder, _ = create_backup(proj, "sqlite", NoStack(), proj.backups_dir)
    con = sqlite3.connect(db)
    with con:
        con.execute("DELETE FROM orders WHERE id < 100")
    con.close()
    changed = sqlite_db.table_checksums(db)
    stack = FailingStart()
    from montero_ops.errors import MonteroError

    with pytest.raises(MonteroError) as err:
        run_restore(plan_restore(proj, "sqlite", folder, proj.backups_dir), proj, stack, proj.backups_dir)
    assert err.value.message.startswith("restore failed: app not healthy after 180 s; the data from before")
    assert sqlite_db.table_checksums(db) == changed
    assert stack.starts == 2


def test_prune_never_deletes_newest_verified(proj: Project) -> None:
    make_db(proj.data_dir / "mi_sistema.db", rows=5)
    made = [create_backup(proj, "sqlite", NoStack(), proj.backups_dir)[0] for _ in range(3)]
    (made[-1] / "mi_sistema.db").write_bytes(b"broken")  # newest is damaged
    plan = plan_prune(proj.backups_dir, keep=0)
    assert plan.protected == made[1].name
    assert [r.id for r in plan.delete] == [made[2].name, made[0].name]
    assert len(list_backups(proj.backups_dir)) == 3  # planning deletes nothing


@needs_redis
@pytest.mark.parametrize("appendonly", [True, False])
def test_redis_round_trip(proj: Project, tmp_path: Path, appendonly: bool) -> None:
    server = RedisProcess(tmp_path / "redis-data", appendonly)
    server.start()
    try:
        r = server.client()
        r.set("rate:203.0.113.7", 5, ex=3600)
        r.hset("session:abc", mapping={"user": "1", "role": "admin"})
        for i in range(500):
            r.set(f"k:{i}", i)
        stack = LocalStack(server)
        folder, manifest = create_backup(proj, "redis", stack, proj.backups_dir)
        assert manifest.redis["persistence"] == ("aof" if appendonly else "rdb")  # type: ignore[index]
        assert verify_backup(folder).ok
        r.delete("session:abc")
        r.set("rate:203.0.113.7", 99)
        r.set("new-after-backup", 1)
        plan = plan_restore(proj, "redis", folder, proj.backups_dir)
        result = run_restore(plan, proj, stack, proj.backups_dir)
        assert stack.events[-2:] == ["stop redis", "start redis"]
        r = server.client()
        assert r.hgetall("session:abc") == {"user": "1", "role": "admin"}
        assert r.get("rate:203.0.113.7") == "5" and 0 < r.ttl("rate:203.0.113.7") <= 3600
        assert r.get("new-after-backup") is None and r.get("k:499") == "499"
        assert result.safety_backup
        # And the data survives another restart (AOF rebuilt from the snapshot when AOF is on).
        server.stop()
        server.start()
        assert server.client().get("k:42") == "42"
    finally:
        server.stop()


@needs_redis
def test_failed_redis_start_puts_the_safety_backup_back(proj: Project, tmp_path: Path) -> None:
    from montero_ops.errors import MonteroError

    server = RedisProcess(tmp_path / "redis-data", appendonly=True)
    server.start()

    class FlakyStart(LocalStack):
        def start(self, services: list[str]) -> None:
            super().start(services)
            if self.events.count("start redis") == 1:
                raise MonteroError("redis not healthy after 180 s")

    try:
        server.client().set("state", "backed-up")
        stack = FlakyStart(server)
        folder, _ = create_backup(proj, "redis", stack, proj.backups_dir)
        server.client().set("state", "current")
        with pytest.raises(MonteroError) as err:
            run_restore(plan_restore(proj, "redis", folder, proj.backups_dir), proj, stack, proj.backups_dir)
        assert "the data from before the restore was put back" in err.value.message
        assert server.client().get("state") == "current"
    finally:
        server.stop()


class InterruptedStart(FailingStart):
    """Ctrl-C while the app starts after the swap; compose, hit by the same SIGINT, may fail too."""

    def __init__(self, first: BaseException) -> None:
        super().__init__()
        self.first = first

    def start(self, services: list[str]) -> None:
        self.starts += 1
        if self.starts == 1:
            raise self.first


def _docker_interrupted() -> BaseException:
    from python_on_whales.exceptions import DockerException

    return DockerException(["/usr/local/bin/docker", "compose", "--file", "x.yml", "start", "redis", "app"], 130,
                           stdout=None, stderr=b"context canceled")


@pytest.mark.parametrize("first", ["ctrl-c", "compose"])
def test_interrupted_restore_says_what_it_left_and_never_a_docker_command_line(proj: Project, first: str) -> None:
    """Issue 22, points 3 and 10: Ctrl-C after the safety backup was 'restore failed: KeyboardInterrupt',
    exit 1, or python-on-whales' raw command line; now the state it left and exit 130."""
    from montero_ops.errors import ExitCode, MonteroError

    db = make_db(proj.data_dir / "mi_sistema.db", rows=300)
    folder, _ = create_backup(proj, "sqlite", NoStack(), proj.backups_dir)
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM orders WHERE id < 50")
    changed = sqlite_db.table_checksums(db)
    stack = InterruptedStart(KeyboardInterrupt() if first == "ctrl-c" else _docker_interrupted())
    with pytest.raises(MonteroError) as err:
        run_restore(plan_restore(proj, "sqlite", folder, proj.backups_dir), proj, stack, proj.backups_dir)
    message = err.value.message
    assert "The command executed was" not in message and "docker compose --file" not in message
    assert "the data from before the restore was put back" in message
    if first == "ctrl-c":
        assert message.startswith("restore failed: interrupted (Ctrl-C); the data from before")
        assert err.value.exit_code == ExitCode.INTERRUPTED
    else:
        assert message.startswith("restore failed: context canceled; the data from before")
    assert sqlite_db.table_checksums(db) == changed


@needs_redis
def test_finishing_a_killed_restore_starts_what_it_had_stopped(proj: Project, tmp_path: Path) -> None:
    """Killed after it stopped Redis: the restore its fix names (`montero restore …`) must leave Redis
    running again, as the killed one would have (e2e: the stack stayed stopped after the fix)."""
    import json
    import subprocess

    from montero_ops.services.backups.journal import RestoreJournal, journal_path

    server = RedisProcess(tmp_path / "redis-data", appendonly=True)
    server.start()
    try:
        server.client().set("state", "backed-up")
        stack = LocalStack(server)
        folder, _ = create_backup(proj, "redis", stack, proj.backups_dir)
        server.client().set("state", "current")
        killed = RestoreJournal.begin(proj, folder, ["redis"], proj.backups_dir, None)
        killed.step("stopping", stopped=["redis"])
        stack.stop(["redis"])  # ... and then it was killed: its pid is gone, its journal stays
        dead = subprocess.Popen(["true"])
        dead.wait()
        data = json.loads(journal_path(proj).read_text())
        journal_path(proj).write_text(json.dumps({**data, "pid": dead.pid}))
        stack.events.clear()
        run_restore(plan_restore(proj, "redis", folder, proj.backups_dir), proj, stack, proj.backups_dir)
        assert stack.events == ["stop redis", "start redis"]
        assert server.client().get("state") == "backed-up"
        assert not journal_path(proj).exists()
    finally:
        server.stop()
