"""Check 5: SQLite locking — WAL and a busy timeout when several gunicorn workers write.

The journal mode is read from the file header (persistent for WAL), the worker count
from GUNICORN_WORKERS (gunicorn.conf.py's default is 2 x cores + 1), the busy timeout
from SQLITE_BUSY_TIMEOUT_MS (the backend's default 15000 ms). Recent "database is
locked" errors are searched in the app containers' logs and in ./logs.
"""

from __future__ import annotations

import os
from pathlib import Path

from montero_ops.services.doctor.context import Context, container_name
from montero_ops.services.doctor.data import database_file, is_wal
from montero_ops.services.doctor.finding import Finding, failed, passed, warned

LOCKED = "database is locked"
LOG_TAIL_LINES = 500
FILE_TAIL_BYTES = 256 * 1024
ADVICE = (
    "keep SQLite in WAL mode (sqlite3 data/mi_sistema.db 'PRAGMA journal_mode=WAL' with the app stopped), "
    "lower GUNICORN_WORKERS in .env, or move to PostgreSQL (DATABASE_URL=postgresql+psycopg://…)"
)


def workers(ctx: Context) -> int:
    raw = ctx.setting("GUNICORN_WORKERS", "")
    try:
        return int(raw) if raw else 2 * (os.cpu_count() or 1) + 1
    except ValueError:
        return 2 * (os.cpu_count() or 1) + 1


def check_locking(ctx: Context) -> list[Finding]:
    return [_journal(ctx), _locked_in_logs(ctx)]


def _journal(ctx: Context) -> Finding:
    path = database_file(ctx)
    if path is None:
        return passed("sqlite.locking", "not SQLite (DATABASE_URL): no SQLite locking to check")
    n = workers(ctx)
    busy = ctx.setting("SQLITE_BUSY_TIMEOUT_MS", "15000")
    try:
        busy_ms = int(busy)
    except ValueError:
        busy_ms = 0
    if not path.exists():
        return passed("sqlite.locking", f"no database yet; {n} worker(s), busy timeout {busy_ms} ms")
    wal = is_wal(path)
    if n > 1 and not wal:
        return failed(
            "sqlite.locking",
            f"{path.name} is not in WAL mode while gunicorn runs {n} workers: writers will block each other",
            ADVICE,
        )
    if n > 1 and busy_ms <= 0:
        return failed(
            "sqlite.locking",
            f"no SQLite busy timeout (SQLITE_BUSY_TIMEOUT_MS={busy}) with {n} workers",
            "set SQLITE_BUSY_TIMEOUT_MS=15000 in .env (or remove it for the default)",
        )
    if n > 1 and busy_ms < 1000:
        return warned(
            "sqlite.locking",
            f"SQLite busy timeout only {busy_ms} ms with {n} workers",
            "set SQLITE_BUSY_TIMEOUT_MS=15000 in .env",
        )
    mode = "WAL" if wal else "rollback journal"
    return passed("sqlite.locking", f"{mode}, busy timeout {busy_ms} ms, {n} worker(s)")


def _file_tail(path: Path) -> str:
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        fh.seek(max(0, fh.tell() - FILE_TAIL_BYTES))
        return fh.read().decode(errors="replace")


def _locked_in_logs(ctx: Context) -> Finding:
    hits: list[str] = []
    sources = []
    if ctx.docker_up:
        for c in ctx.service_containers("app"):
            assert ctx.engine is not None
            try:
                text = ctx.engine.logs_tail(c["Id"], LOG_TAIL_LINES)
            except Exception:  # noqa: BLE001,S112 - a log we cannot read is simply not searched
                continue
            sources.append(container_name(c))
            hits += [ln for ln in text.splitlines() if LOCKED in ln.lower()]
    logs_dir = ctx.project.logs_dir
    if logs_dir.is_dir():
        for log in sorted(logs_dir.glob("*.log")):
            try:
                text = _file_tail(log)
            except OSError:
                continue
            sources.append(f"logs/{log.name}")
            hits += [ln for ln in text.splitlines() if LOCKED in ln.lower()]
    where = ", ".join(sources) or "no app logs"
    if hits:
        sample = ctx.scrub(hits[-1].strip())[:200]
        return failed(
            "sqlite.locked_logs",
            f'{len(hits)} "database is locked" error(s) in recent logs ({where}); last: {sample}',
            ADVICE,
            detail=[ctx.scrub(h)[:300] for h in hits[-5:]],
        )
    return passed("sqlite.locked_logs", f'no "database is locked" in recent logs ({where})')
