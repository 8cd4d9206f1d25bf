"""Issue 22, point 0: without Docker, a restore must never swap a database another process
holds open (its later writes would go into the deleted file and vanish). Real processes,
real SQLite files; Docker is the one boundary faked (unreachable)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_backup_cli import backup, shop, state  # noqa: F401  (fixture)
from typer.testing import Result

from montero_ops.services.backups import holders, sqlite_db

HOLD = """
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode=WAL")
con.execute("SELECT count(*) FROM orders").fetchone()
print("open", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(shop: Path) -> Iterator[subprocess.Popen[str]]:  # noqa: F811
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(shop / "data" / "mi_sistema.db")],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_restore_refused_while_another_process_holds_the_database(
        cli: Callable[..., Result], shop: Path, holder: subprocess.Popen[str]) -> None:  # noqa: F811
    backup(cli)
    db = shop / "data" / "mi_sistema.db"
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders;"], check=True)
    before = state(shop)
    result = cli("restore", "sqlite", "--latest", "--yes")
    assert result.exit_code == 1, result.stderr
    line = next(x for x in result.stderr.splitlines() if x.startswith("Error: "))
    assert line.startswith(f"Error: restore refused: mi_sistema.db is open in pid {holder.pid} (")
    assert "nothing was changed" in line
    assert state(shop) == before  # no swap, no safety backup, nothing new
    assert not list(db.parent.glob(".*restore*"))


def test_restore_goes_on_once_nothing_holds_it(cli: Callable[..., Result], shop: Path) -> None:  # noqa: F811
    db = shop / "data" / "mi_sistema.db"
    wanted = sqlite_db.table_checksums(db)
    backup(cli)
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders;"], check=True)
    result = cli("restore", "sqlite", "--latest", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["restored"] == ["sqlite"]
    assert sqlite_db.table_checksums(db) == wanted


def test_find_holders_sees_the_process_and_its_wal(shop: Path, holder: subprocess.Popen[str]) -> None:  # noqa: F811
    found = holders.find_holders(shop / "data" / "mi_sistema.db")
    assert [pid for pid, _ in found.processes] == [holder.pid]
    assert not found.proven_free


def test_shm_lock_proves_free_only_without_connections(shop: Path) -> None:  # noqa: F811
    """The fallback for users who cannot read other processes' fds: SQLite's DMS lock."""
    db = shop / "data" / "mi_sistema.db"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
        assert holders._shm_free(db) is False
    finally:
        proc.kill()
        proc.wait(timeout=10)
    deadline = time.monotonic() + 5
    while holders._shm_free(db) is False and time.monotonic() < deadline:
        time.sleep(0.05)
    assert holders._shm_free(db) in (True, None)  # None: the last connection removed the -shm


def test_unreadable_processes_without_shm_proof_are_refused() -> None:
    assert not holders.Holders(unreadable=3, shm_free=None).proven_free
    assert not holders.Holders(unreadable=3, shm_free=False).proven_free
    assert holders.Holders(unreadable=3, shm_free=True).proven_free
    assert holders.Holders().proven_free


def test_backups_in_the_same_second_get_distinct_names(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Issue 22, point 7: names are claimed atomically (mkdir), so concurrent backups stamped
    with the same second all succeed (before: 'OSError: [Errno 39] Directory not empty')."""
    import datetime
    import threading

    from montero_ops.project import find_project
    from montero_ops.services.backups import create
    from montero_ops.services.backups.manifest import list_backups
    from montero_ops.services.backups.stack import NoStack

    frozen = datetime.datetime(2026, 12, 2, 12, 0, 0, tzinfo=datetime.UTC)
    monkeypatch.setattr(create, "utc_now", lambda: frozen)
    project = find_project(str(shop), None, None)
    made: list[str] = []
    failed: list[BaseException] = []

    def one() -> None:
        try:
            made.append(create.create_backup(project, "sqlite", NoStack(), shop / "backups")[1].id)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failed.append(exc)

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failed, failed
    assert len(set(made)) == 6
    assert sorted(r.path.name for r in list_backups(shop / "backups") if r.manifest) == sorted(made)
    assert not [p for p in (shop / "backups").iterdir() if p.name.startswith(".")]  # no scratch left


def test_verify_all_without_backups_says_so(cli: Callable[..., Result], shop: Path) -> None:  # noqa: F811
    result = cli("backups", "verify", "--all")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == f"Error: no backups in {shop / 'backups'}"


def test_restore_latest_defaults_to_all_as_the_readme_says(cli: Callable[..., Result], shop: Path) -> None:  # noqa: F811
    """`montero restore --latest` (README) used to exit 2 asking for WHAT; now WHAT is `all`.
    Here the only backup holds only SQLite, so `all` is refused for what it lacks (point 10: and
    the line says what the newest one holds)."""
    made = backup(cli)
    result = cli("restore", "--latest", "--yes")
    assert "Missing argument" not in result.stderr
    assert result.exit_code == 2, result.stderr
    assert result.stderr.splitlines()[0] == (f"Error: no backup in {shop / 'backups'} holds sqlite+redis "
                                             f"(the newest, {made}, holds sqlite)")
