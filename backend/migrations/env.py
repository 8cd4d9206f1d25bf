"""Alembic environment: the URL comes from DATABASE_URL via montero_api.settings (same default as the app).

Migration only needs the database URL, so the SECRET_KEY rule is not applied here: the entrypoint migrates
before gunicorn starts, and gunicorn is where a weak key is refused.
"""

from __future__ import annotations

import os
import sys
from logging.config import fileConfig

from alembic import context
from sqlalchemy import text

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from montero_api.database import create_db_engine, normalize_url
from montero_api.models import Base
from montero_api.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata
MIGRATION_LOCK_KEY = 7_130_017  # any constant; the same in every replica


def database_url() -> str:
    # A caller may pass the URL explicitly (Config.attributes["database_url"]); otherwise the environment.
    explicit = config.attributes.get("database_url")
    if explicit:
        return str(explicit)
    return Settings.from_env(overrides={"FLASK_ENV": "development"}).DATABASE_URL


def run_migrations_offline() -> None:
    context.configure(
        url=normalize_url(database_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = database_url()
    if url.startswith("sqlite:////"):
        os.makedirs(os.path.dirname(url[len("sqlite:///") :]), exist_ok=True)
    engine = create_db_engine(url)
    with engine.connect() as connection:
        # BEGIN IMMEDIATE, like the app's write requests: a deferred transaction reads alembic_version
        # first, and a live writer's commit in between makes its first write fail at once with
        # "database is locked" (SQLITE_BUSY_SNAPSHOT ignores busy_timeout). `montero deploy` migrates
        # a database the running release is writing to; taking the lock up front makes it queue.
        # (PostgreSQL ignores the option.)
        connection.execution_options(sqlite_begin="immediate")
        # render_as_batch: SQLite cannot ALTER most things, batch mode rebuilds tables instead.
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=True, compare_type=True
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Replicas on several hosts start together and the entrypoint's flock only covers
                # one host: the first to get this lock migrates, the others then find the schema
                # at head. Released at commit.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
