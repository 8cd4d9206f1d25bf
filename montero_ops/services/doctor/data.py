"""Check 10 (and the file side of 5): the SQLite file, Alembic revision vs head, backup age.

Everything here reads files on the host, so it works with the stack down. The database
is opened read-only (`mode=ro`): doctor must never create, migrate or lock it.
"""

from __future__ import annotations

import ast
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from montero_ops.errors import MonteroError
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, failed, passed, skipped, warned

BACKUP_WARN_HOURS = 26  # a daily backup plus slack
BACKUP_FAIL_DAYS = 7
INTEGRITY_SHARE = 0.6  # of doctor's per-check timeout, for PRAGMA integrity_check


def database_file(ctx: Context) -> Path | None:
    """The SQLite file on the host; None for PostgreSQL (or a path montero cannot reach)."""
    from montero_ops.services.backups.sqlite_db import database_path

    try:
        return database_path(ctx.project)
    except MonteroError:
        return None


def is_wal(path: Path) -> bool:
    """WAL is persistent: bytes 18-19 of the header are 2 when the file is in WAL mode."""
    with open(path, "rb") as fh:
        header = fh.read(20)
    return len(header) == 20 and header[18] == 2 and header[19] == 2


def quick_check(path: Path) -> str:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
    try:
        rows = con.execute("PRAGMA quick_check").fetchall()
    finally:
        con.close()
    return "; ".join(str(r[0]) for r in rows[:3]) or "no result"


def current_revision(path: Path) -> str | None:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
    try:
        row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    return str(row[0]) if row else None


def migration_graph(versions: Path) -> dict[str, tuple[str, ...]]:
    """revision -> down revisions, parsed from the migration files (no alembic import needed)."""
    graph: dict[str, tuple[str, ...]] = {}
    for script in sorted(versions.glob("*.py")):
        rev: object = None
        down: tuple[object, ...] = ()
        for node in ast.parse(script.read_text()).body:
            target = (
                node.targets[0]
                if isinstance(node, ast.Assign) and len(node.targets) == 1
                else (node.target if isinstance(node, ast.AnnAssign) else None)
            )
            value = getattr(node, "value", None)
            if not isinstance(target, ast.Name) or value is None:
                continue
            try:
                literal = ast.literal_eval(value)
            except ValueError:
                continue
            if target.id == "revision":
                rev = literal
            elif target.id == "down_revision":
                down = tuple(literal) if isinstance(literal, (tuple, list)) else ((literal,) if literal else ())
        if rev:
            graph[str(rev)] = tuple(str(d) for d in down)
    return graph


def heads(graph: dict[str, tuple[str, ...]]) -> list[str]:
    parents = {d for downs in graph.values() for d in downs}
    return sorted(r for r in graph if r not in parents)


def check_database(ctx: Context) -> list[Finding]:
    path = database_file(ctx)
    if path is None:
        return [
            passed("data.integrity", "DATABASE_URL is not a SQLite file under ./data: not checked here"),
            skipped("data.migrations", "not a local SQLite database"),
        ]
    if not path.exists():
        return [
            warned("data.integrity", f"no database yet at {path} (created by migrations on start)", "montero up"),
            skipped("data.migrations", "no database yet"),
        ]
    # The same check that gates a backup, bounded in time; past the bound only quick_check ran,
    # and the line says so (a damaged index passes quick_check: issue 22 point 6).
    from montero_ops.services.backups.sqlite_db import integrity_check_bounded

    budget = ctx.timeout * INTEGRITY_SHARE
    result = integrity_check_bounded(path, budget)
    pragma = "PRAGMA integrity_check"
    if result is None:
        pragma = f"PRAGMA quick_check (integrity_check did not finish within {budget:.1f} s)"
        try:
            result = quick_check(path)
        except sqlite3.DatabaseError as exc:
            result = str(exc)
    restore = (
        "montero restore sqlite --latest   # after keeping the damaged file: cp "
        + str(path)
        + " "
        + str(path)
        + ".damaged"
    )
    if result != "ok":
        return [
            failed("data.integrity", f"{path.name} fails {pragma}: {result}", restore),
            skipped("data.migrations", "database unreadable"),
        ]
    findings = [passed("data.integrity", f"{path.name} passes {pragma}" + (
        "; the full check runs in `montero backups verify` and every backup" if "quick_check" in pragma else ""))]
    findings.append(_migrations(ctx, path))
    return findings


def _migrations(ctx: Context, db: Path) -> Finding:
    versions = ctx.project.root / "backend" / "migrations" / "versions"
    if not versions.is_dir():
        return skipped("data.migrations", f"no migrations folder at {versions}")
    graph = migration_graph(versions)
    head = heads(graph)
    current = current_revision(db)
    upgrade = "montero migrate upgrade   # alembic upgrade head in the app container"
    if current is None:
        return failed("data.migrations", "the database has no Alembic revision (never migrated)", upgrade)
    if current in head:
        return passed("data.migrations", f"database at head revision {current}")
    if current not in graph:
        return failed(
            "data.migrations",
            f"database revision {current} is unknown to this code (newer code needed, or a foreign database)",
            "deploy the code that matches the database, or restore a matching backup: montero restore sqlite --latest",
        )
    return failed("data.migrations", f"database at revision {current}, behind head {', '.join(head)}", upgrade)


def newest_backup_age(ctx: Context) -> tuple[str, float] | None:
    """(backup id, age in hours) of the newest complete backup of this project, or None."""
    from montero_ops.services.backups.manifest import list_backups

    newest: tuple[str, datetime] | None = None
    for ref in list_backups(ctx.project.backups_dir):
        m = ref.manifest
        if m is None or m.label == "safety" or (m.project and m.project != ctx.project.name):
            continue
        try:
            created = datetime.fromisoformat(m.created_at)
        except ValueError:
            continue
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if newest is None or created > newest[1]:
            newest = (ref.id, created)
    if newest is None:
        return None
    return newest[0], (datetime.now(UTC) - newest[1]).total_seconds() / 3600


def check_backups(ctx: Context, check_id: str = "data.backups") -> list[Finding]:
    if ctx.production and check_id == "data.backups":
        return []  # under --production the checklist's prod.backups says it, more strictly
    found = newest_backup_age(ctx)
    strict = ctx.production or check_id != "data.backups"
    if found is None:
        make = failed if strict else warned
        return [make(check_id, f"no backups in {ctx.project.backups_dir}", "montero backup")]
    backup_id, hours = found
    age = f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"
    if hours <= BACKUP_WARN_HOURS:
        return [passed(check_id, f"newest backup {backup_id} is {age} old")]
    if hours > BACKUP_FAIL_DAYS * 24 or strict:
        return [
            failed(
                check_id, f"newest backup {backup_id} is {age} old", "montero backup   # and schedule it daily (cron)"
            )
        ]
    return [warned(check_id, f"newest backup {backup_id} is {age} old", "montero backup")]
