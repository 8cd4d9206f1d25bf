"""`montero backups prune`: one retention rule for local backups and the offsite repository.

The policy is restic's vocabulary: `--keep N` (the N newest), `--keep-daily/weekly/monthly N`
(grandfather-father-son: the newest backup of each of the N most recent days / ISO weeks /
months that have one), united: a backup is kept when any rule keeps it. On top of it:
- the newest verified backup is never deleted, whatever the rules say;
- safety backups (taken automatically before a restore) are not counted by any rule, so they
  never push a regular backup out; the newest one (the undo of the last restore) is always
  kept, older ones go only when `--older-than` says they are old enough;
- `--older-than AGE` deletes only what is older than AGE.

`retention()` decides on plain (id, time, label) items, so the same code plans the local
folder and the repository's snapshots (services/offsite.py forgets exactly those).
"""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from montero_ops.errors import UsageError
from montero_ops.services.backups.manifest import BackupRef, list_backups, utc_now
from montero_ops.services.backups.verify import verify_backup

_AGE = re.compile(r"^(\d+)\s*([dhw])$")
_ID_TIME = re.compile(r"^(\d{8}T\d{6}Z)_")


def parse_age(text: str) -> timedelta:
    match = _AGE.match(text.strip().lower())
    if not match:
        raise UsageError(f"--older-than {text!r}: use a number and d, h or w (e.g. 30d)")
    n, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=n), "h": timedelta(hours=n), "w": timedelta(weeks=n)}[unit]


@dataclass(frozen=True)
class Policy:
    last: int | None = None  # --keep
    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    older_than: str | None = None

    def __post_init__(self) -> None:
        for flag, value in (("--keep", self.last), ("--keep-daily", self.daily), ("--keep-weekly", self.weekly),
                            ("--keep-monthly", self.monthly)):
            if value is not None and value < 0:
                raise UsageError(f"{flag} must be 0 or more")
        if self.older_than is not None:
            parse_age(self.older_than)
        if all(v is None for v in (self.last, self.daily, self.weekly, self.monthly)):
            raise UsageError("say what to keep: --keep N and/or --keep-daily/--keep-weekly/--keep-monthly N",
                             hint="e.g. montero backups prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6")

    def describe(self) -> str:
        parts = [f"{name} {v}" for name, v in (("last", self.last), ("daily", self.daily), ("weekly", self.weekly),
                                                ("monthly", self.monthly)) if v is not None]
        return ", ".join(parts) + (f", older than {self.older_than}" if self.older_than else "")

    def to_dict(self) -> dict[str, Any]:
        return {"keep_last": self.last, "keep_daily": self.daily, "keep_weekly": self.weekly,
                "keep_monthly": self.monthly, "older_than": self.older_than}


@dataclass(frozen=True)
class Item:
    """What retention needs to know of one backup (a local folder or an offsite snapshot)."""

    id: str
    when: datetime
    safety: bool = False


@dataclass
class Decision:
    keep: dict[str, list[str]]  # id -> why it stays ("daily 2026-11-28", "newest verified", ...)
    delete: list[str]


def _bucket(rule: str, when: datetime) -> str:
    """The day, ISO week or month a backup belongs to (UTC)."""
    t = when.astimezone(UTC)
    if rule == "daily":
        return t.strftime("%Y-%m-%d")
    if rule == "weekly":
        year, week, _ = t.isocalendar()
        return f"{year:04d}-W{week:02d}"
    return t.strftime("%Y-%m")


def retention(items: Sequence[Item], policy: Policy, protected: str | None, now: datetime | None = None) -> Decision:
    """Which items a policy keeps, and why; the rest is to delete (in the order given)."""
    newest_first = sorted(items, key=lambda i: (i.when, i.id), reverse=True)
    regular = [i for i in newest_first if not i.safety]
    why: dict[str, list[str]] = {i.id: [] for i in newest_first}
    for item in regular[: policy.last or 0]:
        why[item.id].append("last")
    for rule, count in (("daily", policy.daily), ("weekly", policy.weekly), ("monthly", policy.monthly)):
        seen: list[str] = []
        for item in regular:
            bucket = _bucket(rule, item.when)
            if bucket in seen:
                continue
            if len(seen) >= (count or 0):
                break
            seen.append(bucket)
            why[item.id].append(f"{rule} {bucket}")
    if protected in why:
        why[protected].append("newest verified")
    cutoff = (now or utc_now()) - parse_age(policy.older_than) if policy.older_than else None
    newest_safety = next((i for i in newest_first if i.safety), None)
    for item in newest_first:
        if item is newest_safety:
            why[item.id].append("newest safety backup (the undo of the last restore)")
        elif item.safety and not why[item.id] and (cutoff is None or item.when >= cutoff):
            why[item.id].append("safety backup (not counted)")
        elif cutoff is not None and item.when >= cutoff and not why[item.id]:
            why[item.id].append(f"newer than {policy.older_than}")
    keep = {k: v for k, v in why.items() if v}
    return Decision(keep, [i.id for i in newest_first if i.id not in keep])


def id_time(backup_id: str) -> datetime | None:
    """A backup's time from its ID (IDs start with their UTC time), or None."""
    match = _ID_TIME.match(backup_id)
    if not match:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def _item(ref: BackupRef) -> Item:
    if ref.manifest is not None:
        created = ref.manifest.created_at.replace("Z", "+00:00")
        return Item(ref.id, datetime.fromisoformat(created), ref.manifest.label == "safety")
    # No usable manifest: its name's time, else the folder's; never a safety backup.
    when = id_time(ref.id) or datetime.fromtimestamp(ref.path.stat().st_mtime, UTC)
    return Item(ref.id, when)


@dataclass
class PrunePlan:
    delete: list[BackupRef]
    keep: list[BackupRef]
    protected: str | None  # the newest verified regular backup
    partials: list[Path] = field(default_factory=list)  # left by a backup that was killed
    reasons: dict[str, list[str]] = field(default_factory=dict)
    policy: Policy | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"delete": [r.id for r in self.delete], "keep": [r.id for r in self.keep], "protected": self.protected,
                "unfinished": [p.name for p in self.partials], "reasons": self.reasons,
                "policy": self.policy.to_dict() if self.policy else None}


def plan_prune(backups_dir: Path, keep: int | None = None, older_than: str | None = None, now: datetime | None = None,
               policy: Policy | None = None) -> PrunePlan:
    policy = policy or Policy(last=keep, older_than=older_than)
    refs = list_backups(backups_dir)
    by_id = {r.id: r for r in refs}
    # The newest verified *regular* backup: a safety backup is never what `--latest` means.
    protected = next((r for r in reversed(refs)
                      if r.manifest and r.manifest.label != "safety" and verify_backup(r.path).ok), None)
    decision = retention([_item(r) for r in refs], policy, protected.id if protected else None, now)
    delete = [by_id[i] for i in decision.delete]
    kept = [r for r in reversed(refs) if r.id in decision.keep]
    # Unfinished backups older than an hour cannot belong to a backup still running.
    hour_ago = time.time() - 3600
    partials = sorted(p for p in backups_dir.glob(".partial-*") if p.is_dir() and p.stat().st_mtime < hour_ago) \
        if backups_dir.is_dir() else []
    return PrunePlan(delete, kept, protected.id if protected else None, partials, decision.keep, policy)


def apply_prune(plan: PrunePlan) -> None:
    from montero_ops.services import drill

    for ref in plan.delete:
        shutil.rmtree(ref.path)
        drill.forget(ref.path.parent, ref.id)
    for partial in plan.partials:
        shutil.rmtree(partial, ignore_errors=True)
