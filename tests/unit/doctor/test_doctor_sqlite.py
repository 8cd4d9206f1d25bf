"""sqlite.*, data.*: real SQLite files (WAL and not, behind head, corrupted on purpose), real backups."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from doctor_helpers import DoctorEngine, make_ctx, make_db, write_env

from montero_ops.services.doctor.data import check_backups, check_database, heads, migration_graph
from montero_ops.services.doctor.locking import check_locking


def _db(root: Path) -> Path:
    return root / "data" / "mi_sistema.db"


def test_locking_wal_passes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_db(_db(root), wal=True)
    monkeypatch.setenv("GUNICORN_WORKERS", "5")
    found = {f.id: f for f in check_locking(make_ctx(root))}
    assert found["sqlite.locking"].status.value == "pass" and "WAL" in found["sqlite.locking"].message
    assert found["sqlite.locked_logs"].status.value == "pass"


def test_locking_rollback_journal_with_workers_fails(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_db(_db(root), wal=False)
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    finding = check_locking(make_ctx(root))[0]
    assert finding.status.value == "fail"
    assert "not in WAL mode" in finding.message and "3 workers" in finding.message
    assert "journal_mode=WAL" in finding.fix and "GUNICORN_WORKERS" in finding.fix and "PostgreSQL" in finding.fix


def test_locking_single_worker_without_wal_passes(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_db(_db(root), wal=False)
    monkeypatch.setenv("GUNICORN_WORKERS", "1")
    assert check_locking(make_ctx(root))[0].status.value == "pass"


@pytest.mark.parametrize(("busy", "status"), [("500", "warn"), ("0", "fail")])
def test_locking_busy_timeout(root: Path, monkeypatch: pytest.MonkeyPatch, busy: str, status: str) -> None:
    make_db(_db(root), wal=True)
    monkeypatch.setenv("GUNICORN_WORKERS", "4")
    write_env(root, f"SQLITE_BUSY_TIMEOUT_MS={busy}\n")
    finding = check_locking(make_ctx(root))[0]
    assert finding.status.value == status and "SQLITE_BUSY_TIMEOUT_MS" in finding.fix


def test_database_is_locked_in_log_file(root: Path) -> None:
    (root / "logs" / "app.log").write_text(
        "INFO ok\nERROR sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) database is locked\nINFO ok\n"
    )
    finding = check_locking(make_ctx(root))[1]
    assert finding.status.value == "fail"
    assert '1 "database is locked"' in finding.message and "logs/app.log" in finding.message


def test_database_is_locked_in_container_logs(root: Path, engine: DoctorEngine) -> None:
    engine.add("app", logs="GET /clients 500\nsqlite3.OperationalError: database is locked\n" * 3)
    finding = check_locking(make_ctx(root, engine))[1]
    assert finding.status.value == "fail" and "shop-app-1" in finding.message and "3" in finding.message


def test_migration_graph_and_head(root: Path) -> None:
    graph = migration_graph(root / "backend" / "migrations" / "versions")
    assert graph == {"aaa111": (), "bbb222": ("aaa111",)}
    assert heads(graph) == ["bbb222"]


def test_integrity_and_migrations_pass(root: Path) -> None:
    make_db(_db(root), revision="bbb222")
    found = {f.id: f for f in check_database(make_ctx(root))}
    assert found["data.integrity"].status.value == "pass"
    assert found["data.migrations"].status.value == "pass" and "bbb222" in found["data.migrations"].message


def test_database_not_created_yet_warns(root: Path) -> None:
    found = {f.id: f for f in check_database(make_ctx(root))}
    assert found["data.integrity"].status.value == "warn" and found["data.integrity"].fix == "montero up"


def test_corrupted_database_fails_with_restore(root: Path) -> None:
    db = make_db(_db(root), wal=False)
    data = bytearray(db.read_bytes())
    page = 4096
    data[page : page * 3] = b"\xde\xad\xbe\xef" * (page // 2)  # smash the b-tree pages after the header page
    db.write_bytes(bytes(data))
    found = {f.id: f for f in check_database(make_ctx(root))}
    assert found["data.integrity"].status.value == "fail"
    assert "fails PRAGMA integrity_check" in found["data.integrity"].message
    assert found["data.integrity"].fix.startswith("montero restore sqlite --latest")
    assert found["data.migrations"].status.value == "skip"


def test_not_a_database_fails(root: Path) -> None:
    _db(root).write_bytes(b"this is not sqlite at all" * 100)
    finding = check_database(make_ctx(root))[0]
    assert finding.status.value == "fail" and "not a database" in finding.message


def test_quick_check_does_not_write(root: Path) -> None:
    db = make_db(_db(root), wal=False)
    before = db.stat().st_mtime_ns, db.read_bytes()
    check_database(make_ctx(root))
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    assert not Path(str(db) + "-wal").exists()


def test_migrations_behind_head_fail(root: Path) -> None:
    make_db(_db(root), revision="aaa111")
    finding = {f.id: f for f in check_database(make_ctx(root))}["data.migrations"]
    assert finding.status.value == "fail"
    assert "aaa111, behind head bbb222" in finding.message
    assert finding.fix.startswith("montero migrate upgrade")


@pytest.mark.parametrize(("revision", "text"), [(None, "never migrated"), ("zzz999", "unknown to this code")])
def test_migrations_missing_or_unknown(root: Path, revision: str | None, text: str) -> None:
    make_db(_db(root), revision=revision)
    finding = {f.id: f for f in check_database(make_ctx(root))}["data.migrations"]
    assert finding.status.value == "fail" and text in finding.message


def test_postgres_is_not_checked_here(root: Path) -> None:
    write_env(root, "DATABASE_URL=postgresql+psycopg://u:pw@db/montero\n")
    found = {f.id: f.status.value for f in check_database(make_ctx(root))}
    assert found == {"data.integrity": "pass", "data.migrations": "skip"}


# -- backups -----------------------------------------------------------------------------------


def _backup(root: Path, age: timedelta, project: str = "shop", label: str = "manual") -> None:
    when = datetime.now(UTC) - age
    folder = root / "backups" / f"{when.strftime('%Y%m%dT%H%M%SZ')}_{project}_sqlite"
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps(
            {
                "format": 1,
                "id": folder.name,
                "created_at": when.isoformat(),
                "montero_version": "0",
                "project": project,
                "contents": ["sqlite"],
                "files": [],
                "label": label,
            }
        )
    )


@pytest.mark.parametrize(
    ("age", "status"), [(timedelta(hours=2), "pass"), (timedelta(days=3), "warn"), (timedelta(days=10), "fail")]
)
def test_backup_age(root: Path, age: timedelta, status: str) -> None:
    _backup(root, age)
    [finding] = check_backups(make_ctx(root))
    assert finding.status.value == status
    if status != "pass":
        assert finding.fix.startswith("montero backup")


def test_no_backup_warns_and_ignores_safety_and_foreign(root: Path) -> None:
    _backup(root, timedelta(hours=1), label="safety")
    _backup(root, timedelta(hours=1, minutes=1), project="other")
    [finding] = check_backups(make_ctx(root))
    assert finding.status.value == "warn" and "no backups" in finding.message


def test_old_backup_fails_in_production(root: Path) -> None:
    _backup(root, timedelta(days=2))
    assert check_backups(make_ctx(root, production=True)) == []  # prod.backups reports it instead
    assert check_backups(make_ctx(root, production=True), "prod.backups")[0].status.value == "fail"
