"""Shared helpers for the backup tests: real SQLite files, a real redis-server, alembic scripts.

(Named test_backup_* so it sits with the tests it serves; it holds no tests itself.)
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import sqlite3
import subprocess
import time
from pathlib import Path

from montero_ops.errors import CommandFailed
from montero_ops.services.backups.redis_data import LocalRedis, restore_local
from montero_ops.services.backups.stack import RAW_COPY_SCRIPT, STOPPED_SNAPSHOT_SCRIPT, run_local

SCHEMA = """
CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY);
CREATE TABLE orders (id INTEGER PRIMARY KEY, payload TEXT NOT NULL, digest TEXT NOT NULL);
CREATE TABLE order_items (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, qty INTEGER NOT NULL);
"""

MIGRATION = '''"""{rev}"""
revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


def digest(payload: str) -> str:
    return hashlib.sha256(payload.encode()).hexdigest()


def make_db(path: Path, rows: int = 1000, revision: str | None = "bbb2", payload_size: int = 200) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(SCHEMA)
    if revision:
        con.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    for i in range(rows):
        payload = f"order-{i}-" + "x" * payload_size
        cur = con.execute("INSERT INTO orders (payload, digest) VALUES (?, ?)", (payload, digest(payload)))
        con.execute("INSERT INTO order_items (order_id, qty) VALUES (?, ?)", (cur.lastrowid, i % 7))
    con.commit()
    con.close()
    return path


def damaged_index(db: Path, rows: int = 3000) -> Path:
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.executescript("CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT, nit TEXT);"
                      "CREATE INDEX ix_clients_name ON clients (name);")
    con.executemany("INSERT INTO clients (name, nit) VALUES (?, ?)", [(f"c{i}", f"n{i}") for i in range(rows)])
    con.commit()
    # Point the index at another column: its pages no longer match the table (what a flipped
    # byte in an index page does), while every page is still a well-formed b-tree page.
    con.execute("PRAGMA writable_schema=ON")
    con.execute("UPDATE sqlite_master SET sql='CREATE INDEX ix_clients_name ON clients (nit)' "
                "WHERE name='ix_clients_name'")
    con.commit()
    con.close()
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA quick_check").fetchone()[0] == "ok"  # what doctor used to run
    con.close()
    return db


def make_migrations(root: Path, revisions: tuple[str, ...] = ("aaa1", "bbb2")) -> None:
    """A real Alembic script directory: ScriptDirectory reads heads from it."""
    folder = root / "backend" / "migrations"
    (folder / "versions").mkdir(parents=True, exist_ok=True)
    (folder / "env.py").write_text("# env.py is not run by ScriptDirectory\n")
    (folder / "script.py.mako").write_text("")
    down = "None"
    for i, rev in enumerate(revisions):
        (folder / "versions" / f"{i:04d}_{rev}.py").write_text(MIGRATION.format(rev=rev, down=down))
        down = repr(rev)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisProcess:
    """A real redis-server on a free port; stop/start behave like `compose stop/start`."""

    def __init__(self, data_dir: Path, appendonly: bool) -> None:
        self.data_dir, self.appendonly, self.port = data_dir, appendonly, free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
             "--appendonly", "yes" if self.appendonly else "no", "--save", "3600 1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(CommandFailed, OSError):
                if "PONG" in LocalRedis(self.port).cli("PING"):
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM, like `docker stop`: redis saves and exits
            self.proc.wait(timeout=30)
        self.proc = None

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        return redis.Redis(port=self.port, decode_responses=True)


class LocalStack:
    """The Stack seam backed by a real local redis-server (no app service)."""

    def __init__(self, redis_proc: RedisProcess | None) -> None:
        self.redis_proc = redis_proc
        self.events: list[str] = []

    def running(self, service: str) -> bool:
        return service == "redis" and self.redis_proc is not None and self.redis_proc.proc is not None

    def stop(self, services: list[str]) -> None:
        self.events.append("stop " + ",".join(services))
        if "redis" in services and self.redis_proc:
            self.redis_proc.stop()

    def start(self, services: list[str]) -> None:
        self.events.append("start " + ",".join(services))
        if "redis" in services and self.redis_proc:
            self.redis_proc.start()

    def redis(self) -> LocalRedis:
        assert self.redis_proc is not None
        return LocalRedis(self.redis_proc.port)

    def redis_snapshot_stopped(self, dest: Path) -> dict[str, object]:
        """What the throwaway container does: a private redis-server loads the files (AOF first)."""
        assert self.redis_proc is not None
        out = run_local(STOPPED_SNAPSHOT_SCRIPT, self.redis_proc.data_dir, dest)
        return {"persistence": "aof" if "persistence=yes" in out else "rdb", "source": "volume (stack stopped)",
                "dbfilename": "dump.rdb"}

    def redis_raw_copy(self, dest: Path) -> dict[str, object]:
        assert self.redis_proc is not None
        out = run_local(RAW_COPY_SCRIPT, self.redis_proc.data_dir, dest)
        return {"persistence": "aof" if "persistence=yes" in out else "rdb", "source": "raw files of the volume",
                "dbfilename": "dump.rdb"}

    def redis_restore(self, src: Path, aof: bool, raw: bool = False) -> None:
        assert self.redis_proc is not None
        restore_local(src, self.redis_proc.data_dir, aof, raw=raw)


def copy_db(src: Path, dest: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{src}{suffix}").exists():
            shutil.copy2(f"{src}{suffix}", f"{dest}{suffix}")


def has_redis() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def uid() -> int:
    return os.getuid()
