"""`montero backups verify`: checksums, the database's integrity, a complete manifest."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montero_ops.errors import UsageError
from montero_ops.services.backups import sqlite_db
from montero_ops.services.backups.manifest import MANIFEST, Manifest, read_manifest, sha256_file
from montero_ops.services.backups.redis_data import looks_like_rdb

DAMAGED_HINT = "pick another backup (`montero backups list`), or check them all: `montero backups verify --all`"


@dataclass
class VerifyResult:
    id: str
    path: Path
    ok: bool
    problems: list[str] = field(default_factory=list)
    manifest: Manifest | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": str(self.path), "ok": self.ok, "problems": self.problems}


def verify_backup(folder: Path) -> VerifyResult:
    try:
        manifest = read_manifest(folder)
    except UsageError as exc:
        return VerifyResult(folder.name, folder, False, [exc.message])
    problems: list[str] = []
    # A raw safety copy (Redis could not load its own files, e.g. a damaged AOF) holds those files
    # exactly as they were: its checksums are checked, not whether Redis could load them.
    raw_redis = bool((manifest.redis or {}).get("raw"))
    for entry in manifest.files:
        path = folder / entry.name
        if not path.is_file():
            problems.append(f"{entry.name} is missing")
            continue
        size = path.stat().st_size
        if size != entry.size:
            how = "truncated" if size < entry.size else "size differs"
            problems.append(f"{entry.name} is {size} bytes, the manifest says {entry.size} ({how})")
            continue
        if sha256_file(path) != entry.sha256:
            problems.append(f"{entry.name} checksum does not match the manifest")
            continue
        if entry.role == "sqlite":
            problems += _check_sqlite(path, entry.compression == "gzip", manifest)
        if entry.role == "redis-rdb" and not raw_redis and not looks_like_rdb(path):
            problems.append(f"{entry.name} is not a Redis RDB file")
    # A file the manifest does not list is not part of the backup: added, or left by something else.
    listed = {entry.name for entry in manifest.files} | {MANIFEST}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        if name not in listed:
            problems.append(f"{name} is not listed in the manifest (an extra file)")
    for kind in manifest.contents:
        if kind == "sqlite" and (manifest.file("sqlite") is None or manifest.sqlite is None):
            problems.append("manifest lists sqlite but describes no database file")
        if kind == "redis" and manifest.redis is None:
            problems.append("manifest lists redis but describes no Redis data")
        elif kind == "redis" and manifest.file("redis-rdb") is None and not raw_redis:
            problems.append("manifest lists redis but describes no dump.rdb")
    return VerifyResult(folder.name, folder, not problems, problems, manifest)


def _check_sqlite(path: Path, compressed: bool, manifest: Manifest) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="montero-verify-") as tmp:
        db = path
        if compressed:
            db = Path(tmp) / "check.db"
            try:
                sqlite_db.gunzip_file(path, db)
            except UsageError as exc:
                return [exc.message]
        result = sqlite_db.integrity_check(db)
        if result != "ok":
            return [f"{path.name} fails PRAGMA integrity_check: {result}"]
        revision, counts = sqlite_db.stats(db)
        meta = manifest.sqlite or {}
        if counts != meta.get("tables") or revision != meta.get("revision"):
            return [f"{path.name} row counts or revision differ from the manifest"]
    return []


def check_backup(folder: Path) -> Manifest:
    """The manifest of a sound backup, or UsageError (exit 2) naming the first problem."""
    if not folder.is_dir():
        raise UsageError(f'no backup "{folder.name}" at {folder}', hint="see `montero backups list`")
    result = verify_backup(folder)
    if not result.ok or result.manifest is None:
        first = result.problems[0]
        if first.startswith(f"backup {folder.name}"):
            raise UsageError(first, hint=DAMAGED_HINT)
        raise UsageError(f"backup {folder.name} is damaged: {first}", hint=DAMAGED_HINT)
    return result.manifest
