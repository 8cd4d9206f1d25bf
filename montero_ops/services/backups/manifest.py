"""What a backup is on disk: one folder, its files, and a manifest.json describing them.

Folder names sort by time and say what they hold: `20261128T051500Z_montero_sqlite+redis`.
A backup is written under a hidden `.partial-…` name and renamed when complete, so a
half-written backup never shows up in `backups list`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from montero_ops.errors import UsageError

MANIFEST = "manifest.json"
FORMAT = 1
_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)_(.+)_([a-z+]+?)(?:-(\d+))?$")
REQUIRED_KEYS = ("format", "id", "created_at", "montero_version", "project", "contents", "files")


@dataclass
class FileEntry:
    name: str
    role: str  # "sqlite" | "redis-rdb" | "redis-aof"
    size: int
    sha256: str
    compression: str | None = None  # "gzip" when compressed
    uncompressed_size: int | None = None


@dataclass
class Manifest:
    id: str
    created_at: str
    montero_version: str
    project: str
    contents: list[str]
    files: list[FileEntry] = field(default_factory=list)
    label: str = "manual"  # "manual" | "safety" (taken automatically before a restore)
    sqlite: dict[str, Any] | None = None
    redis: dict[str, Any] | None = None
    format: int = FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        files = [FileEntry(**f) for f in data.get("files", [])]
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__ and k != "files"}
        return cls(files=files, **known)

    def file(self, role: str) -> FileEntry | None:
        return next((f for f in self.files if f.role == role), None)

    @property
    def created(self) -> datetime:
        return datetime.fromisoformat(self.created_at)


@dataclass
class BackupRef:
    """A backup folder found on disk; manifest is None when it is missing or unreadable."""

    path: Path
    manifest: Manifest | None
    problem: str | None = None

    @property
    def id(self) -> str:
        return self.path.name


def utc_now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def backup_id(when: datetime, project: str, contents: list[str]) -> str:
    return f"{when.strftime('%Y%m%dT%H%M%SZ')}_{project}_{'+'.join(contents)}"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path, manifest: Manifest) -> None:
    tmp = folder / (MANIFEST + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(manifest.to_dict(), fh, indent=2)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MANIFEST)


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a backup folder; UsageError (exit 2) with one clear line when unusable."""
    path = folder / MANIFEST
    if not path.is_file():
        raise UsageError(
            f"backup {folder.name} has no {MANIFEST} (incomplete, or not made by montero)",
            hint="pick another backup: `montero backups list`",
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"backup {folder.name}: {MANIFEST} is unreadable ({exc})") from exc
    missing = [k for k in REQUIRED_KEYS if k not in data] if isinstance(data, dict) else list(REQUIRED_KEYS)
    if missing:
        raise UsageError(f"backup {folder.name}: {MANIFEST} is incomplete (missing {', '.join(missing)})")
    try:
        return Manifest.from_dict(data)
    except TypeError as exc:
        raise UsageError(f"backup {folder.name}: {MANIFEST} is malformed ({exc})") from exc


def list_backups(backups_dir: Path) -> list[BackupRef]:
    """Every backup folder, oldest first (names sort by time). Partial folders are skipped."""
    if not backups_dir.is_dir():
        return []
    refs: list[BackupRef] = []
    for folder in sorted(p for p in backups_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not any(folder.iterdir()):
            continue  # a name claimed by a backup that is being finished (create._claim_name)
        try:
            refs.append(BackupRef(folder, read_manifest(folder)))
        except UsageError as exc:
            refs.append(BackupRef(folder, None, exc.message))
    return refs


@dataclass
class Partial:
    """An unfinished backup folder (`.partial-…`): a backup running now, or one that was killed."""

    path: Path
    size: int
    mtime: float


def partial_backups(backups_dir: Path) -> list[Partial]:
    if not backups_dir.is_dir():
        return []
    found = []
    for folder in sorted(backups_dir.glob(".partial-*")):
        try:
            if folder.is_dir():
                size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
                found.append(Partial(folder, size, folder.stat().st_mtime))
        except OSError:
            continue  # removed while we looked: a backup that just finished
    return found


def is_regular(ref: BackupRef, project: str | None = None) -> bool:
    """A complete backup someone made (not a restore's safety backup), of `project` if given."""
    m = ref.manifest
    return m is not None and m.label != "safety" and (project is None or m.project == project)


def latest_backup(backups_dir: Path, project: str | None = None, needs: list[str] | None = None) -> BackupRef:
    """What `--latest` means in every command: the newest regular backup of the project that
    holds every part asked for (an older complete one beats a newer sqlite-only one)."""
    regular = [r for r in list_backups(backups_dir) if is_regular(r, project)]
    if not regular:
        whose = f" of project {project}" if project else ""
        raise UsageError(f"no backups{whose} in {backups_dir}", hint="make one with `montero backup`")
    holding = [r for r in regular if r.manifest and all(w in r.manifest.contents for w in needs or [])]
    if not holding:
        raise UsageError(f"no backup in {backups_dir} holds {'+'.join(needs or [])} (the newest, {regular[-1].id}, "
                         f"holds {'+'.join(regular[-1].manifest.contents if regular[-1].manifest else [])})",
                         hint="restore the parts it holds (e.g. `montero restore sqlite --latest`), or `montero backup`")
    return holding[-1]


def find_backup(backups_dir: Path, ref: str | None, latest: bool = False, project: str | None = None,
                needs: list[str] | None = None) -> Path:
    """A backup folder from an ID (folder name, or unique prefix), a PATH, or --latest
    (latest_backup: the newest regular one of `project` holding `needs`)."""
    if latest or not ref:
        return latest_backup(backups_dir, project, needs).path
    as_path = Path(ref).expanduser()
    if as_path.is_dir() and (os.sep in ref or as_path.is_absolute() or not (backups_dir / ref).exists()):
        return as_path.resolve()
    exact = backups_dir / ref
    if exact.is_dir():
        return exact
    matches = [p for p in backups_dir.glob(f"{ref}*") if p.is_dir() and not p.name.startswith(".")]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f'"{ref}" matches {len(matches)} backups; give the full ID')
    raise UsageError(f'no backup "{ref}" in {backups_dir}', hint="see `montero backups list`")
