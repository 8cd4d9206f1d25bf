"""The restore journal: `.montero/restore.json`, written before a restore's first step and
removed after its last. Found with nobody holding the project lock, it means a restore was
killed (kill -9, power loss, OOM): the next state-changing command and `doctor` name it, say
whether the database is the old or the new one, remove its leftovers and give the command
that finishes it.

Which database is in place is decided by the file itself: its inode (the swap is a rename,
so the new file keeps the inode of the staged copy) and its SHA-256 against the checksum
recorded when the copy was staged from the backup's manifest.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from montero_ops.output import size
from montero_ops.project import Project
from montero_ops.services.backups.manifest import partial_backups, sha256_file, utc_now
from montero_ops.services.lock import holder, state_dir

NAME = "restore.json"
PHASE_RESTORE, PHASE_ROLLBACK = "restore", "rollback"


@dataclass
class Journal:
    pid: int
    started_at: str
    backup: str
    backup_path: str
    what: list[str]
    backups_dir: str
    db_path: str | None = None
    phase: str = PHASE_RESTORE
    step: str = "checks"
    stopped: list[str] = field(default_factory=list)
    safety_backup: str | None = None
    inodes: dict[str, str] = field(default_factory=dict)  # inode of a database file -> "old" | "backup" | "safety"
    sha256: dict[str, str] = field(default_factory=dict)  # "backup" | "safety" -> SHA-256 of the staged file
    done: list[str] = field(default_factory=list)  # parts swapped in this phase ("sqlite", "redis")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Journal:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def journal_path(project: Project) -> Path:
    return state_dir(project) / NAME


class RestoreJournal:
    """The journal of the restore this process runs; every step is on disk before it starts."""

    def __init__(self, project: Project, journal: Journal) -> None:
        self.path, self.data = journal_path(project), journal
        self.write()

    @classmethod
    def begin(cls, project: Project, backup: Path, what: list[str], backups_dir: Path,
              db_path: Path | None) -> RestoreJournal:
        stamp = utc_now().isoformat().replace("+00:00", "Z")
        journal = Journal(os.getpid(), stamp, backup.name, str(backup), what, str(backups_dir),
                          str(db_path) if db_path else None)
        if db_path is not None and db_path.exists():
            journal.inodes[str(db_path.stat().st_ino)] = "old"
        return cls(project, journal)

    def step(self, name: str, **changes: Any) -> None:
        self.data.step = name
        for key, value in changes.items():
            setattr(self.data, key, value)
        self.write()

    def staged(self, staged: Path, label: str) -> None:
        """The copy about to be renamed over the database: after the rename it is the database."""
        self.data.inodes[str(staged.stat().st_ino)] = label
        self.data.sha256[label] = sha256_file(staged)
        self.write()

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(asdict(self.data), fh, indent=2)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)


@dataclass
class Interrupted:
    """A restore that did not finish, as the next command sees it."""

    journal: Journal
    database: str  # "old" | "backup" | "safety" | "missing" | "unknown" | "-"
    removed: list[str]
    fix: str
    fix_kind: str  # "up" (nothing changed) | "restore"

    @property
    def lines(self) -> list[str]:
        j = self.journal
        what = "+".join(j.what)
        doing = "putting back its safety backup" if j.phase == PHASE_ROLLBACK else f"at step '{j.step}'"
        out = [(f"an interrupted restore: {what} from {j.backup} (pid {j.pid}, started at {j.started_at}) "
               f"stopped {doing}")]
        if j.db_path:
            out.append("the database is " + {
                "old": "the old one (unchanged)",
                "backup": f"the backup's ({j.backup}, checksum as staged)",
                "backup-changed": f"the backup's ({j.backup}), written to since it was put in place",
                "safety-changed": f"the old one (from the safety backup {j.safety_backup}), written to since",
                "safety": f"the old one, put back from the safety backup {j.safety_backup}",
                "missing": "missing",
                "unknown": "neither the old nor the backup's one as staged (changed since)",
            }.get(self.database, self.database))
        if "redis" in j.what:
            out.append("Redis: " + ("restored" if "redis" in j.done else
                                    "its restore had started (state unknown)" if j.step == "redis" else "unchanged"))
        if j.stopped:
            out.append(f"stopped by it: {', '.join(j.stopped)}")
        if self.removed:
            out.append(f"removed its leftovers: {', '.join(self.removed)}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"journal": asdict(self.journal), "database": self.database, "removed": self.removed,
                "fix": self.fix}


def read_journal(project: Project) -> Journal | None:
    try:
        return Journal.from_dict(json.loads(journal_path(project).read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None


def find_interrupted(project: Project, clean: bool = True) -> Interrupted | None:
    """The restore that was interrupted, or None (none, or it is still running).

    With clean=True (the caller holds the project lock) its leftovers are removed.
    """
    journal = read_journal(project)
    if journal is None or journal.pid == os.getpid():
        return None
    running = holder(project)
    if running is not None and running.pid == journal.pid:
        return None  # still running
    removed = _remove_leftovers(journal) if clean else []
    database = _database_state(journal)
    fix, kind = _fix(journal, database)
    return Interrupted(journal, database, removed, fix, kind)


def what_arg(what: list[str]) -> str:
    """The WHAT argument of `montero restore` for these parts (never `sqlite+redis`)."""
    return "all" if set(what) >= {"sqlite", "redis"} else what[0]


def _fix(journal: Journal, database: str) -> tuple[str, str]:
    what = what_arg(journal.what)
    if journal.phase == PHASE_ROLLBACK and journal.safety_backup:
        return f"montero restore {what} {journal.safety_backup} --yes   # finishes putting the old data back", "restore"
    untouched = database in ("old", "-", "missing", "safety", "safety-changed") and not journal.done and journal.step != "redis"
    if untouched:
        return ("montero up   # the data is unchanged; or restore it after all: "
                f"montero restore {what} {journal.backup} --yes"), "up"
    undo = f"; to undo: montero restore {what} {journal.safety_backup} --yes" if journal.safety_backup else ""
    return f"montero restore {what} {journal.backup} --yes   # finishes the restore{undo}", "restore"


def _database_state(journal: Journal) -> str:
    if not journal.db_path:
        return "-"
    db = Path(journal.db_path)
    if not db.exists():
        return "missing" if "old" not in journal.inodes.values() else "unknown"
    label = journal.inodes.get(str(db.stat().st_ino))
    if label is None:
        return "unknown"
    if label in journal.sha256 and sha256_file(db) != journal.sha256[label]:
        # The same file, written to since it was swapped in (the app started on it).
        return label if label == "old" else f"{label}-changed"
    return label


def leftovers(journal: Journal) -> list[str]:
    """What the interrupted restore left behind (name and size), without removing it."""
    return [label for _path, label in _leftovers(journal)]


def _leftovers(journal: Journal) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    if journal.db_path:
        db = Path(journal.db_path)
        for stale in sorted(db.parent.glob(f".{db.name}.restore-*")):
            with contextlib.suppress(OSError):
                found.append((stale, f"{stale.name} ({size(stale.stat().st_size)})"))
    try:
        since = datetime.fromisoformat(journal.started_at).timestamp() - 1
    except ValueError:
        return found
    for partial in partial_backups(Path(journal.backups_dir)):
        if partial.mtime >= since:
            found.append((partial.path, f"{partial.path.name} (unfinished safety backup, {size(partial.size)})"))
    return found


def _remove_leftovers(journal: Journal) -> list[str]:
    removed = []
    for path, label in _leftovers(journal):
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(label)
    return removed


def resolve(project: Project, kind: str) -> bool:
    """After `kind`'s fix ran successfully ("up"), forget an interrupted restore it fixed."""
    found = find_interrupted(project, clean=False)
    if found is not None and found.fix_kind == kind:
        journal_path(project).unlink(missing_ok=True)
        return True
    return False
