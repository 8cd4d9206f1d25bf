"""`montero backup`: one folder per backup, checked before it counts as done."""

from __future__ import annotations

import contextlib
import errno
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from montero_ops import __version__
from montero_ops.errors import MonteroError
from montero_ops.project import Project
from montero_ops.services.backups import sqlite_db
from montero_ops.services.backups.manifest import FileEntry, Manifest, backup_id, sha256_file, utc_now, write_manifest
from montero_ops.services.backups.redis_data import snapshot
from montero_ops.services.backups.stack import Stack, scratch_dir

Progress = Callable[[str], None]
ORDER = ("sqlite", "redis")
MARGIN = 8 * 1024 * 1024


def normalize_what(what: str | list[str]) -> list[str]:
    items = ORDER if what == "all" else ([what] if isinstance(what, str) else what)
    return [w for w in ORDER if w in items]


def require_space(folder: Path, needed: int, what: str, hint: str | None = None) -> None:
    """Refuse before writing anything when the disk cannot hold the result."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if free < needed + MARGIN:
        raise MonteroError(
            f"not enough free space in {folder} for {what}: need {_mb(needed + MARGIN)}, {_mb(free)} free",
            hint=hint or "free some space, prune old backups (`montero backups prune`), or use --dir elsewhere",
        )


def _mb(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB"


def sqlite_size(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def create_backup(
    project: Project,
    what: str | list[str],
    stack: Stack,
    backups_dir: Path,
    compress: bool = False,
    label: str = "manual",
    db_path: Path | None = None,
    progress: Progress = lambda _msg: None,
    require_integrity: bool = True,
) -> tuple[Path, Manifest]:
    contents = normalize_what(what)
    db = db_path or (sqlite_db.database_path(project) if "sqlite" in contents else None)
    if db is not None and "sqlite" in contents and not db.exists():
        raise MonteroError(f"no SQLite database at {db}", hint="start the stack once (`montero up`) so it creates it")
    if db is not None and "sqlite" in contents:
        # The copy, plus its compressed form while both exist.
        require_space(backups_dir, sqlite_size(db) * (2 if compress else 1), "the SQLite backup")
    when = utc_now()
    work = scratch_dir(backups_dir)
    files: list[FileEntry] = []
    manifest = Manifest(
        id="", created_at=when.isoformat().replace("+00:00", "Z"), montero_version=__version__,
        project=project.name, contents=contents, label=label,
    )
    try:
        if "sqlite" in contents and db is not None:
            manifest.sqlite = _backup_sqlite(db, work, compress, files, progress, require_integrity)
            try:
                manifest.sqlite["source"] = str(db.relative_to(project.root))
            except ValueError:
                manifest.sqlite["source"] = str(db)
        if "redis" in contents:
            manifest.redis = _backup_redis(stack, work, files, progress, raw_fallback=not require_integrity)
        manifest.files = files
        final = _claim_name(backups_dir, backup_id(when, project.name, contents))
        try:
            manifest.id = final.name
            write_manifest(work, manifest)
            work.rename(final)  # onto the empty folder we claimed: atomic
        except BaseException:
            with contextlib.suppress(OSError):
                final.rmdir()
            raise
        sqlite_db.fsync_dir(backups_dir)
        return final, manifest
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if _target_full(exc):
            raise MonteroError(
                f"the backups folder {backups_dir} is full (no space left on its disk); nothing was kept",
                hint="free some space there, `montero backups prune`, or back up elsewhere with --dir",
            ) from exc
        raise


def _target_full(exc: BaseException) -> bool:
    """ENOSPC while writing the backup: an OSError, or SQLite's 'database or disk is full' from
    the online copy (it writes only the copy; reading a source on a full disk does not fail)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return True
    if isinstance(exc, sqlite3.OperationalError):
        return "disk is full" in str(exc)
    # Redis's files come out of their container through `docker cp`, which writes them into the
    # backup folder: its ENOSPC is its text ('write …/dump.rdb: no space left on device').
    return "no space left on device" in str(exc).lower()


def _claim_name(backups_dir: Path, base: str) -> Path:
    """Reserve a free name by creating it (mkdir is atomic): two backups in the same second,
    even from two processes, get two names instead of one failing with 'Directory not empty'."""
    candidate, n = backups_dir / base, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = backups_dir / f"{base}-{n}"


def _backup_sqlite(
    db: Path, work: Path, compress: bool, files: list[FileEntry], progress: Progress, require_integrity: bool
) -> dict[str, object]:
    copy = work / db.name
    progress(f"SQLite: online copy of {db} ({_mb(sqlite_size(db))})")
    journal_mode = "wal"
    try:
        journal_mode = sqlite_db.online_copy(db, copy)
    except sqlite3.DatabaseError as exc:
        if _target_full(exc):
            raise  # the copy's disk is full, not the source's fault: create_backup says so
        if require_integrity:
            raise MonteroError(f"cannot read {db}: {exc}", hint="see docs/backups.md, Recovery") from exc
        # Safety copy of a damaged database: keep the raw bytes, whatever they are.
        shutil.copyfile(db, copy)
    progress("SQLite: PRAGMA integrity_check on the copy")
    # The checksum is computed while SQLite checks the copy: both release the GIL, and
    # together they were half of the backup's time (docs/benchmarks.md, figure 9).
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        hashing = pool.submit(sha256_file, copy)
        check = sqlite_db.integrity_check(copy)
        if check != "ok" and require_integrity:
            hashing.cancel()
            raise MonteroError(f"the copy of {db.name} fails PRAGMA integrity_check: {check}",
                               hint="the live database may be damaged; see docs/backups.md, Recovery")
        try:
            revision, counts = sqlite_db.stats(copy)
        except sqlite3.DatabaseError:
            revision, counts = None, {}
        digest = hashing.result()
    size = copy.stat().st_size
    entry = FileEntry(name=copy.name, role="sqlite", size=size, sha256=digest)
    if compress:
        progress("SQLite: compressing (gzip)")
        packed = work / (copy.name + ".gz")
        sqlite_db.gzip_file(copy, packed)
        copy.unlink()
        entry = FileEntry(name=packed.name, role="sqlite", size=packed.stat().st_size, sha256=sha256_file(packed),
                          compression="gzip", uncompressed_size=size)
    files.append(entry)
    return {"revision": revision, "tables": counts, "integrity_check": check, "uncompressed_sha256": digest,
            "journal_mode": journal_mode}


def _backup_redis(stack: Stack, work: Path, files: list[FileEntry], progress: Progress,
                  raw_fallback: bool = False) -> dict[str, object]:
    dest = work / "redis"
    try:
        info = _redis_snapshot(stack, dest, progress)
    except MonteroError as exc:
        if not raw_fallback:
            raise MonteroError(f"cannot back up Redis: {exc.message}",
                               hint=exc.hint or "see `montero doctor` (data.redis_aof) and `montero logs redis`") from exc
        # A restore's safety copy of a Redis that cannot load its own files (a damaged AOF
        # crash-loops it): keep the files as they are, so the restore can rescue it.
        progress(f"Redis cannot load its data ({exc.message}): the safety backup keeps its files as they are "
                 "(raw copy)")
        shutil.rmtree(dest, ignore_errors=True)
        info = stack.redis_raw_copy(dest)
        info.update(raw=True, unreadable=exc.message)
    for path in sorted(p for p in dest.rglob("*") if p.is_file()):
        role = "redis-rdb" if path.name == "dump.rdb" and path.parent == dest else "redis-aof"
        files.append(FileEntry(name=str(path.relative_to(work)), role=role, size=path.stat().st_size,
                               sha256=sha256_file(path)))
    if not info.get("raw") and not any(f.role == "redis-rdb" for f in files):
        raise MonteroError("Redis produced no dump.rdb")
    return info


def _redis_snapshot(stack: Stack, dest: Path, progress: Progress) -> dict[str, object]:
    if stack.running("redis"):
        progress("Redis: BGSAVE, waiting for LASTSAVE to move")
        try:
            info = snapshot(stack.redis(), dest)
            info["source"] = "running redis (BGSAVE)"
            return info
        except MonteroError:
            # A crash-looping container counts as running but answers nothing (its error would be
            # 'Container <id> is restarting'): its files, loaded privately, say why, or are copied.
            progress("Redis does not answer: reading its data volume with a throwaway container")
            shutil.rmtree(dest, ignore_errors=True)
    progress("Redis: not running, reading its data volume with a throwaway container")
    return stack.redis_snapshot_stopped(dest)
