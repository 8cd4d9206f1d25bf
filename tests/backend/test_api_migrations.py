"""Alembic owns the schema: upgrade on an empty database, downgrade to base, upgrade again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from api_helpers import BACKEND
from montero_api.database import create_db_engine
from montero_api.models import Base

APP_TABLES = {"users", "auth_sessions", "password_reset_tokens", "clients", "affiliations", "audit_log"}


def alembic_config(url: str) -> Config:
    """In-process Alembic on backend/alembic.ini (the CLI itself is exercised by the template_db fixture)."""
    config = Config(str(BACKEND / "alembic.ini"))
    config.attributes["database_url"] = url
    config.attributes["configure_logger"] = False
    return config


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def revision(path: Path) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "data" / "fresh.db"  # the data folder does not exist yet, as on a first start
    url = f"sqlite:///{path}"
    config = alembic_config(url)
    command.upgrade(config, "head")
    assert APP_TABLES <= tables(path)
    head = revision(path)
    assert head is not None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    command.downgrade(config, "base")
    assert tables(path) & APP_TABLES == set()
    assert revision(path) is None

    command.upgrade(config, "head")
    assert APP_TABLES <= tables(path)
    assert revision(path) == head


def test_models_match_the_migrations(template_db: Path) -> None:
    engine = create_db_engine(f"sqlite:///{template_db}")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == [], "models changed without a migration: run `alembic revision --autogenerate`"


def test_no_create_all_path() -> None:
    sources = [p for p in BACKEND.rglob("*.py") if "migrations" not in p.parts]
    offenders = [str(p) for p in sources if "create_all" in p.read_text()]
    assert offenders == []


def test_template_database_is_at_the_single_head(template_db: Path) -> None:
    heads = ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads()
    assert len(heads) == 1  # one linear history
    assert revision(template_db) == heads[0]


def test_migrations_wait_for_live_writers_instead_of_failing(template_db: Path, tmp_path: Path) -> None:
    """`montero deploy` migrates the live database while the app writes. Alembic's deferred BEGIN read
    alembic_version, then a commit by a writer made its write SQLITE_BUSY_SNAPSHOT: "database is locked"
    at once, whatever the busy timeout (a CI run of the releases e2e failed so). Migrations take the
    write lock up front, like the app's write requests, and queue behind writers instead."""
    import shutil
    import threading

    path = tmp_path / "live.db"
    shutil.copy(template_db, path)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE scratch (n INTEGER)")
    config = alembic_config(f"sqlite:///{path}")
    stop = threading.Event()
    commits = [0]

    def writer() -> None:
        conn = sqlite3.connect(path, timeout=30, isolation_level=None)
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO scratch VALUES (1)")
            conn.execute("COMMIT")
            commits[0] += 1
        conn.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        for _ in range(25):
            command.downgrade(config, "0001")
            command.upgrade(config, "head")
    finally:
        stop.set()
        thread.join(10)
    assert commits[0] > 25  # the writer really ran during the migrations
    assert revision(path) == ScriptDirectory.from_config(config).get_current_head()
