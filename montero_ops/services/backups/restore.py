"""`montero restore`: verify, safety backup, stop only what must stop, swap atomically,
start, wait for health; on any failure put the safety backup back the same way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from montero_ops.errors import ExitCode, MonteroError, UsageError, docker_error_line
from montero_ops.project import Project
from montero_ops.services.backups import sqlite_db
from montero_ops.services.backups.create import create_backup, normalize_what, require_space, sqlite_size
from montero_ops.services.backups.holders import require_unheld
from montero_ops.services.backups.journal import PHASE_ROLLBACK, RestoreJournal, find_interrupted, what_arg
from montero_ops.services.backups.manifest import Manifest
from montero_ops.services.backups.redis_data import persistence_mode
from montero_ops.services.backups.stack import Stack
from montero_ops.services.backups.verify import check_backup

Progress = Callable[[str], None]


@dataclass
class Migrations:
    heads: set[str]
    known: set[str]


def migrations(project: Project) -> Migrations | None:
    """Heads and all revisions of the project's backend/migrations (Alembic imported lazily)."""
    folder = project.root / "backend" / "migrations"
    if not (folder / "env.py").is_file():
        return None
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(folder))
    return Migrations(set(script.get_heads()), {s.revision for s in script.walk_revisions()})


@dataclass
class RestorePlan:
    folder: Path
    manifest: Manifest
    what: list[str]
    db_path: Path | None
    revision: str | None
    heads: set[str] | None
    needs_migration: bool
    overwrites: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"backup": self.folder.name, "what": self.what, "revision": self.revision,
                "heads": sorted(self.heads or []), "needs_migration": self.needs_migration,
                "overwrites": self.overwrites}


def plan_restore(project: Project, what: str, folder: Path, backups_dir: Path, db_path: Path | None = None) -> RestorePlan:
    """Every check that can refuse, before anything is touched."""
    manifest = check_backup(folder)
    if manifest.project != project.name:
        raise UsageError(f'backup {folder.name} belongs to project "{manifest.project}", not "{project.name}"',
                         hint="restore it from that project, or pass --project-name if this is the same stack renamed")
    wanted = normalize_what(what)
    missing = [w for w in wanted if w not in manifest.contents]
    if missing:
        raise UsageError(f"backup {folder.name} holds {'+'.join(manifest.contents)}, not {'+'.join(missing)}")
    revision = (manifest.sqlite or {}).get("revision") if "sqlite" in wanted else None
    mig = migrations(project) if "sqlite" in wanted else None
    needs_migration = False
    if revision and mig is not None:
        if revision not in mig.known:
            raise UsageError(
                f"backup {folder.name} has database revision {revision}, newer than this code's head "
                f"{', '.join(sorted(mig.heads))}",
                hint="update the code (git pull) to a version that knows this revision, then restore",
            )
        needs_migration = revision not in mig.heads
    plan = RestorePlan(folder, manifest, wanted, None, revision, mig.heads if mig else None, needs_migration)
    if "sqlite" in wanted:
        plan.db_path = db_path or sqlite_db.database_path(project)
        entry = manifest.file("sqlite")
        assert entry is not None
        need = entry.uncompressed_size or entry.size
        require_space(plan.db_path.parent, need, "the restored database",
                      hint=f"free some space in {plan.db_path.parent} (nothing was changed)")
        if plan.db_path.exists():
            require_space(backups_dir, sqlite_size(plan.db_path), "the safety backup")
            plan.overwrites.append(str(plan.db_path))
    if "redis" in wanted:
        plan.overwrites.append("Redis data (dump.rdb and the append-only files in its volume)")
    return plan


@dataclass
class RestoreResult:
    backup: str
    safety_backup: str | None
    restored: list[str]
    notes: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"backup": self.backup, "safety_backup": self.safety_backup, "restored": self.restored,
                "notes": self.notes}


def run_restore(
    plan: RestorePlan, project: Project, stack: Stack, backups_dir: Path, progress: Progress = lambda _m: None
) -> RestoreResult:
    had_db = plan.db_path is not None and plan.db_path.exists()
    if plan.db_path is not None and "sqlite" in plan.what and not project.data_dir.exists():
        # A fresh host (no ./data yet): make it as `montero up` does (see commands/offsite.py).
        from montero_ops.services.stack import prepare_dirs

        prepare_dirs(project)
    safety_what = [w for w in plan.what if w != "sqlite" or had_db]
    app_running = "sqlite" in plan.what and stack.running("app")
    redis_running = "redis" in plan.what and stack.running("redis")
    aof = _redis_aof(plan, stack, redis_running)
    if plan.db_path is not None and "sqlite" in plan.what and not app_running:
        # montero will not stop anything: whatever has the file open must not be there at all
        # (Docker unreachable, or an app outside Docker).
        require_unheld(plan.db_path, "restore refused")
    # Finishing a restore that was killed after it had stopped services: they are started again
    # at the end, as it would have done (its journal, replaced just below, says which).
    previous = find_interrupted(project, clean=False)
    restart = list(previous.journal.stopped) if previous is not None else []
    # On disk before the first step, gone after the last: a kill in between is found and explained
    # by the next command (journal.find_interrupted).
    journal = RestoreJournal.begin(project, plan.folder, plan.what, backups_dir, plan.db_path)
    safety: tuple[Path, Manifest] | None = None
    if safety_what:
        progress(f"safety backup of the current {'+'.join(safety_what)}")
        journal.step("safety-backup")
        try:
            safety = create_backup(project, safety_what, stack, backups_dir, label="safety", db_path=plan.db_path,
                                   progress=progress, require_integrity=False)
        except BaseException as exc:
            journal.finish()  # nothing was changed
            if isinstance(exc, MonteroError):
                raise MonteroError(f"could not take the safety backup, nothing was changed: {exc.message}",
                                   hint=exc.hint) from exc
            if isinstance(exc, KeyboardInterrupt):
                raise MonteroError("restore interrupted (Ctrl-C) during the safety backup: nothing was changed",
                                   exit_code=ExitCode.INTERRUPTED) from exc
            raise
        journal.step("safety-backup", safety_backup=safety[0].name)
    to_stop = (["app"] if app_running else []) + (["redis"] if redis_running else [])
    # Litestream (replicate profile) holds the database open: it stops with the app, starts after it.
    to_stop += ["replicate"] if "sqlite" in plan.what and stack.running("replicate") else []
    to_stop += [service for service in restart if service not in to_stop]
    notes: list[str] = []
    try:
        _put_data(plan.folder, plan.manifest, plan, stack, to_stop, aof, progress, journal, "backup")
        _start(stack, to_stop, progress, journal)
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        reason = "interrupted (Ctrl-C)" if interrupted else _reason(exc)
        code = ExitCode.INTERRUPTED if interrupted else ExitCode.FAILED
        if safety is None:
            raise MonteroError(f"restore failed: {reason} (there was no previous data to put back)",
                               hint=f"run it again: `montero restore {what_arg(plan.what)} {plan.folder.name} --yes`",
                               exit_code=code) from exc
        touched = _touched(journal)
        if not touched:
            # Failed before any data was replaced (a full disk while staging, a failed stop):
            # the data is the old one; putting the safety backup back would only copy it again
            # (and fail again on a full disk, saying so although nothing was lost).
            journal.step("rollback", phase=PHASE_ROLLBACK, done=[])
            try:
                _start(stack, to_stop, progress, journal)
            except BaseException as exc3:
                journal.finish()
                raise MonteroError(
                    f"restore failed: {reason}; the data was not changed, but {', '.join(to_stop)} did not start: "
                    f"{_reason(exc3)}", hint="see `montero logs`, then `montero up`", exit_code=code) from exc3
            journal.finish()
            restarted = " (the stack was restarted)" if to_stop else ""
            hint = exc.hint if isinstance(exc, MonteroError) else None
            raise MonteroError(f"restore failed: {reason}; the data was not changed{restarted}", hint=hint,
                               exit_code=code) from exc
        progress(f"restore failed ({reason}); putting back the safety backup {safety[0].name}")
        journal.step("rollback", phase=PHASE_ROLLBACK, done=[])
        undo = f"`montero restore {what_arg(safety_what)} {safety[0].name} --yes`"
        try:
            _put_data(safety[0], safety[1], replace(plan, what=[w for w in plan.what if w in touched]), stack,
                      to_stop, aof, progress, journal, "safety")
        except BaseException as exc2:
            raise MonteroError(
                f"restore failed: {reason}; putting the previous data back ALSO failed: {_reason(exc2)}",
                hint=f"the previous data is in {safety[0]}: {undo}",
                exit_code=code,
            ) from exc2
        try:
            _start(stack, to_stop, progress, journal)
        except BaseException as exc3:
            journal.finish()  # the data is the old one again: nothing to finish
            raise MonteroError(
                f"restore failed: {reason}; the data from before the restore was put back "
                f"(safety backup {safety[0].name}), but {', '.join(to_stop)} did not start: {_reason(exc3)}",
                hint="see `montero logs`, then `montero up`",
                exit_code=code,
            ) from exc3
        journal.finish()
        restarted = " and the stack restarted" if to_stop else ""
        raise MonteroError(
            f"restore failed: {reason}; the data from before the restore was put back "
            f"(safety backup {safety[0].name}){restarted}",
            exit_code=code,
        ) from exc
    journal.finish()
    if plan.needs_migration:
        notes.append(f"database revision {plan.revision} is older than head {', '.join(sorted(plan.heads or []))}: "
                     + ("the app ran `alembic upgrade head` on start" if "app" in to_stop
                        else "migrations run on the next `montero up`"))
    if "sqlite" in plan.what and "app" not in to_stop:
        notes.append("the app was not running: start it with `montero up`")
    return RestoreResult(plan.folder.name, safety[0].name if safety else None, plan.what, notes)


def _touched(journal: RestoreJournal) -> list[str]:
    """The parts a failed restore may have replaced: swapped ones, SQLite once its staged copy was
    recorded (the rename may have happened), Redis once its files started to go back."""
    data = journal.data
    touched = set(data.done)
    if "backup" in data.sha256:
        touched.add("sqlite")
    if data.step == "redis":
        touched.add("redis")
    return [w for w in data.what if w in touched]


def _reason(exc: BaseException) -> str:
    """One line for a user: never python-on-whales' whole docker command line (that is --verbose's)."""
    if isinstance(exc, MonteroError):
        return exc.message
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted (Ctrl-C)"
    if type(exc).__module__.startswith("python_on_whales"):
        return docker_error_line(exc)
    return str(exc) or type(exc).__name__


def _redis_aof(plan: RestorePlan, stack: Stack, running: bool) -> bool:
    """The append-only setting of the Redis that will load the data (not of the backup's)."""
    if "redis" not in plan.what:
        return False
    if running:
        try:
            return persistence_mode(stack.redis()) == "aof"
        except MonteroError:
            pass  # crash-looping (a damaged AOF): it cannot answer; the backup says how it ran
    return (plan.manifest.redis or {}).get("persistence") == "aof"


def _put_data(folder: Path, manifest: Manifest, plan: RestorePlan, stack: Stack, to_stop: list[str], aof: bool,
              progress: Progress, journal: RestoreJournal, label: str) -> None:
    if to_stop:
        progress(f"stopping {', '.join(to_stop)}")
        journal.step("stopping", stopped=to_stop)
        stack.stop(to_stop)
    if "sqlite" in plan.what and plan.db_path is not None and "sqlite" in manifest.contents:
        entry = manifest.file("sqlite")
        assert entry is not None
        progress(f"SQLite: putting {entry.name} in place of {plan.db_path} (atomic rename)")
        journal.step("sqlite")
        meta = manifest.sqlite or {}
        staged = sqlite_db.stage_copy(folder / entry.name, plan.db_path, entry.compression == "gzip",
                                      sha256=meta.get("uncompressed_sha256") or entry.sha256,
                                      journal_mode=meta.get("journal_mode"))
        try:
            # Also after montero stopped the app: nothing may still write to the old file.
            require_unheld(plan.db_path, "restore stopped before the swap")
            journal.staged(staged, label)
            sqlite_db.swap_in(staged, plan.db_path)
            journal.step("sqlite", done=[*journal.data.done, "sqlite"])
        finally:
            staged.unlink(missing_ok=True)
    if "redis" in plan.what and "redis" in manifest.contents:
        raw = bool((manifest.redis or {}).get("raw"))
        if raw:
            progress("Redis: putting its files back as they were (a raw copy: Redis could not load them then)")
        else:
            progress("Redis: putting dump.rdb in place" + (" and rebuilding the append-only file" if aof else ""))
        journal.step("redis")
        stack.redis_restore(folder / "redis", aof, raw=raw)
        journal.step("redis", done=[*journal.data.done, "redis"])


def _start(stack: Stack, to_stop: list[str], progress: Progress, journal: RestoreJournal) -> None:
    if to_stop:
        start: list[str] = [s for s in ("redis", "app", "replicate") if s in to_stop]
        progress(f"starting {', '.join(start)} and waiting until healthy")
        journal.step("starting")
        stack.start(start)
