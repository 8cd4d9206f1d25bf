"""Engine and session handling shared by the app, the CLI commands and Alembic's env.py.

SQLite is tuned so that several gunicorn workers can write at once:
- WAL journal (readers never block the writer) and a busy timeout (a writer waits instead of failing);
- write requests open their transaction with BEGIN IMMEDIATE. A deferred transaction that reads first and
  writes later cannot wait for the lock when another worker committed in between (SQLITE_BUSY_SNAPSHOT:
  "database is locked" regardless of busy_timeout); taking the write lock up front makes it queue instead.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context, request
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def normalize_url(url: str) -> str:
    """Map the URLs people paste into DATABASE_URL onto the drivers we ship (psycopg 3)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def create_db_engine(url: str, busy_timeout_ms: int = 15000) -> Engine:
    url = normalize_url(url)
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_pre_ping=True, future=True)

    engine = sa.create_engine(url, future=True, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Hand transaction control to SQLAlchemy's "begin" event below (pysqlite's own BEGIN is deferred).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin")
        conn.exec_driver_sql("BEGIN IMMEDIATE" if mode == "immediate" else "BEGIN")

    return engine


class Database:
    """Per-app engine + session factory, stored in app.extensions (several apps may share a process in tests)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.factory = sessionmaker(bind=engine, expire_on_commit=False, future=True)
        self.is_sqlite = engine.dialect.name == "sqlite"

    def open_session(self, write: bool) -> Session:
        session = self.factory()
        if write and self.is_sqlite:
            session.connection(execution_options={"sqlite_begin": "immediate"})
        return session


def init_app(app: Flask, url: str, busy_timeout_ms: int) -> Database:
    database = Database(create_db_engine(url, busy_timeout_ms))
    app.extensions["montero_db"] = database

    @app.teardown_appcontext
    def _close_session(exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()

    return database


def get_db() -> Database:
    database: Database = current_app.extensions["montero_db"]
    return database


def db_session() -> Session:
    """The request's session; write requests hold SQLite's write lock from their first statement."""
    if "db_session" not in g:
        write = has_request_context() and request.method in WRITE_METHODS
        g.db_session = get_db().open_session(write=write)
    session: Session = g.db_session
    return session
