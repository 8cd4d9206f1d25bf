"""The entrypoint's fast path (backend/migrations/at_head.py): 0 only when Alembic would have nothing to do.

Real SQLite databases migrated by the Alembic CLI; the script run as the entrypoint runs it. Any doubt
must mean "run Alembic" (exit 1): a wrong 0 would skip a migration.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from api_helpers import BACKEND, run_alembic

SCRIPT = BACKEND / "migrations" / "at_head.py"


def at_head(url: str | None) -> int:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if url is not None:
        env["DATABASE_URL"] = url
    return subprocess.run([sys.executable, "migrations/at_head.py"], cwd=BACKEND, env=env, timeout=30,
                          check=False).returncode


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("at_head", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_database_at_head_needs_no_alembic(template_db: Path, tmp_path: Path) -> None:
    db = tmp_path / "mi_sistema.db"
    shutil.copy(template_db, db)
    assert at_head(f"sqlite:///{db}") == 0
    # Read-only: nothing was written next to the database (no journal left behind, same bytes).
    assert db.read_bytes() == template_db.read_bytes()


def test_an_older_revision_a_missing_file_or_another_engine_runs_alembic(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    run_alembic(f"sqlite:///{old}", "upgrade", "0001")
    assert at_head(f"sqlite:///{old}") == 1
    assert at_head(f"sqlite:///{tmp_path / 'missing.db'}") == 1
    assert not (tmp_path / "missing.db").exists()  # the fast path never creates the database
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()  # no alembic_version table
    assert at_head(f"sqlite:///{empty}") == 1
    assert at_head("postgresql+psycopg://u:p@127.0.0.1:1/x") == 1
    assert at_head("sqlite://") == 1  # in memory
    assert at_head(f"sqlite:///{old}?mode=ro") == 1


def test_a_newer_revision_than_this_release_knows_runs_alembic(template_db: Path, tmp_path: Path) -> None:
    """A rollback: the entrypoint's "newer release" path must still see Alembic's own error."""
    db = tmp_path / "newer.db"
    shutil.copy(template_db, db)
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    assert at_head(f"sqlite:///{db}") == 1


def test_the_head_is_the_one_alembic_computes() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(Config(str(BACKEND / "alembic.ini")))
    assert load_module().head() == script.get_current_head()


def test_a_migration_it_cannot_read_or_two_heads_mean_doubt(tmp_path: Path) -> None:
    module = load_module()
    versions = tmp_path / "versions"
    shutil.copytree(BACKEND / "migrations" / "versions", versions, ignore=shutil.ignore_patterns("__pycache__"))
    assert module.head(versions) == "0002"
    (versions / "0003_branch.py").write_text('revision = "0003"\ndown_revision = "0001"\n')
    assert module.head(versions) is None  # 0002 and 0003 are both heads
    (versions / "0003_branch.py").write_text('revision = make_id()\ndown_revision = "0002"\n')
    assert module.head(versions) is None  # not a literal: cannot tell
    (versions / "0003_branch.py").write_text('"""no revision at all"""\n')
    assert module.head(versions) is None
    (versions / "0003_branch.py").write_text('revision = "0003"\ndown_revision = ("0002",)\n')
    assert module.head(versions) == "0003"
