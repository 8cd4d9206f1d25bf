"""Issue 22 point 0, end to end through the installed `montero` (complements
test_restore_holders.py, which fakes the engine in-process): without Docker, `restore sqlite` must not swap a database some process
still holds open (its later writes would go to the deleted file and vanish).

Real faults: the real CLI in a subprocess, DOCKER_HOST on a socket that does not exist, and a
real process with an open sqlite3 connection on the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_backup_support import make_db, make_migrations

from montero_ops.services.backups import sqlite_db

HOLDER = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("SELECT count(*) FROM sqlite_master").fetchone()
print("open", flush=True)
sys.stdin.read()
"""


def montero(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, DOCKER_HOST=f"unix://{root}/nonexistent.sock", NO_COLOR="1")
    env.pop("MONTERO_BACKUP_DIR", None)
    return subprocess.run([str(Path(sys.executable).with_name("montero")), *args], cwd=root, env=env, check=False,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def shop(project: Path) -> Path:
    make_migrations(project)
    make_db(project / "data" / "mi_sistema.db", rows=200)
    return project


@pytest.fixture
def holder(shop: Path) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(shop / "data" / "mi_sistema.db")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "open\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def _backup(shop: Path) -> str:
    made = montero(shop, "backup", "sqlite", "--json")
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["id"])


def test_restore_refused_while_a_process_holds_the_db(shop: Path, holder: subprocess.Popen[str]) -> None:
    db = shop / "data" / "mi_sistema.db"
    _backup(shop)  # backup is read-only: allowed with the file open
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders;"], check=True)
    before = sqlite_db.table_checksums(db)
    inode = db.stat().st_ino
    backups = sorted(p.name for p in (shop / "backups").iterdir())
    result = montero(shop, "restore", "sqlite", "--latest", "--yes")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    refusal = [line for line in lines if line.startswith("Error: restore refused:")]
    assert len(refusal) == 1, result.stderr
    assert f"mi_sistema.db is open in pid {holder.pid}" in refusal[0]
    assert "Traceback" not in result.stderr and "restored" not in result.stderr
    # nothing changed: same file (inode), same content, no safety backup, no temp file
    assert db.stat().st_ino == inode and sqlite_db.table_checksums(db) == before
    assert sorted(p.name for p in (shop / "backups").iterdir()) == backups
    assert [p.name for p in db.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_restore_proceeds_when_nothing_holds_the_db(shop: Path) -> None:
    db = shop / "data" / "mi_sistema.db"
    original = sqlite_db.table_checksums(db)
    _backup(shop)
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders;"], check=True)
    result = montero(shop, "restore", "sqlite", "--latest", "--yes")
    assert result.returncode == 0, result.stderr
    assert "restored sqlite from" in result.stderr
    assert sqlite_db.table_checksums(db) == original
