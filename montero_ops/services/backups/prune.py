"""`montero backups prune`: retention that never deletes the newest verified backup."""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from montero_ops.errors import UsageError
from montero_ops.services.backups.manifest import BackupRef, list_backups, utc_now
from montero_ops.services.backups.verify import verify_backup

_AGE = re.compile(r"^(\d+)\s*([dhw])$")


def parse_age(text: str) -> timedelta:
    match = _AGE.match(text.strip().lower())
    if not match:
        raise UsageError(f"--older-than {text!r}: use a number and d, h or w (e.g. 30d)")
    n, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[unit]


@dataclass
class PrunePlan:
    delete: list[BackupRef]
    keep: list[BackupRef]
    protected: str | None  # the newest verified backup
    partials: list[Path] = field(default_factory=list)  # left by a backup that was killed

    def to_dict(self) -> dict[str, Any]:
        return {"delete": [r.id for r in self.delete], "keep": [r.id for r in self.keep], "protected": self.protected,
                "unfinished": [p.name for p in self.partials]}


def plan_prune(backups_dir: Path, keep: int, older_than: str | None = None, now: datetime | None = None) -> PrunePlan:
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    refs = list_backups(backups_dir)
    newest_first = list(reversed(refs))
    # Safety backups (taken by a restore) are not counted in --keep: they would push out the
    # regular backups, and --latest never picks them. The newest one (the undo of the last
    # restore) is always kept; older ones go only with --older-than.
    safety = [r for r in newest_first if r.manifest is not None and r.manifest.label == "safety"]
    regular = [r for r in newest_first if r not in safety]
    protected = next((r for r in regular if r.manifest and verify_backup(r.path).ok), None)
    cutoff = (now or utc_now()) - parse_age(older_than) if older_than else None

    def old_enough(ref: BackupRef) -> bool:
        if cutoff is None:
            return True
        if ref.manifest is not None:
            return ref.manifest.created < cutoff
        return datetime.fromtimestamp(ref.path.stat().st_mtime, cutoff.tzinfo) < cutoff

    delete: list[BackupRef] = []
    kept: list[BackupRef] = []
    for index, ref in enumerate(regular):
        (delete if index >= keep and old_enough(ref) and ref is not protected else kept).append(ref)
    for index, ref in enumerate(safety):
        (delete if index >= 1 and cutoff is not None and old_enough(ref) else kept).append(ref)
    # Unfinished backups older than an hour cannot belong to a backup still running.
    hour_ago = time.time() - 3600
    partials = sorted(p for p in backups_dir.glob(".partial-*") if p.is_dir() and p.stat().st_mtime < hour_ago) \
        if backups_dir.is_dir() else []
    return PrunePlan(delete, kept, protected.id if protected else None, partials)


def apply_prune(plan: PrunePlan) -> None:
    for ref in plan.delete:
        shutil.rmtree(ref.path)
    for partial in plan.partials:
        shutil.rmtree(partial, ignore_errors=True)
