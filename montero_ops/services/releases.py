"""Releases on one host: immutable app image tags and the history that says what ran when.

A release is an image `<repo>:<release id>` (the repository of the configured app image, e.g.
`myproject-app`, see `release_tag`) plus a record in `.montero/releases.json` under the project
(not in docker/, which is the stack's definition, not its state). The configured tag
(MONTERO_APP_IMAGE, default `<project>-app:latest`: `project.configured_app_image`) is what
compose starts; a deploy or rollback moves it to the release's image, so a later `montero up`
finds the containers already on that image and recreates nothing.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from montero_ops.errors import MonteroError, UsageError
from montero_ops.project import Project

HISTORY_DIR = ".montero"
HISTORY_FILE = "releases.json"
DEFAULT_KEEP = 5


@dataclass
class Receipt:
    """What the deploy's own probe stream saw during the switch."""

    duration_s: float = 0.0
    replicas_replaced: int = 0
    probes_sent: int = 0
    probes_failed: int = 0
    reconnects: int = 0  # keep-alive connections nginx closed before a request was answered (retried)
    p50_ms: float | None = None
    p99_ms: float | None = None
    first_error: str | None = None
    backup: str | None = None
    revision_before: str | None = None
    revision_after: str | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Receipt:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass
class Release:
    id: str
    image: str  # the immutable tag, e.g. montero-app:3f2a9c1d7b20-20260101T120000
    digest: str  # the image id (sha256:…): local images have no registry digest
    commit: str | None
    created_at: str
    by: str
    kind: str = "deploy"  # deploy | rollback | adopted (the image that ran before the first deploy)
    outcome: str = "pending"  # pending | ok | failed | rolled-back
    revision: str | None = None  # migration head of this release's image
    reason: str | None = None
    receipt: Receipt | None = None
    failure: dict[str, Any] | None = None  # the "why it failed" bundle
    rollback_of: str | None = None
    pruned: bool = False  # its image was removed (MONTERO_KEEP_RELEASES); the record stays
    reference: str | None = None  # on a swarm: what the service runs (REGISTRY/name:tag@sha256:… on several nodes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Release:
        values = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        if isinstance(values.get("receipt"), dict):
            values["receipt"] = Receipt.from_dict(values["receipt"])
        return cls(**values)


@dataclass
class History:
    path: Path
    current: str | None = None
    releases: list[Release] = field(default_factory=list)

    def get(self, release_id: str) -> Release | None:
        return next((r for r in self.releases if r.id == release_id), None)

    def current_release(self) -> Release | None:
        return self.get(self.current) if self.current else None

    def previous(self) -> Release | None:
        """The release that ran before the current one (the newest other good one)."""
        for release in reversed(self.releases):
            if (release.id != self.current and release.outcome == "ok" and release.kind != "rollback"
                    and not release.pruned):
                return release
        return None

    def to_dict(self) -> dict[str, Any]:
        return {"current": self.current, "releases": [r.to_dict() for r in self.releases]}


def history_path(project: Project, target: str = "") -> Path:
    """One history per target: `releases.json` for this host, `releases-swarm-<stack>.json` per stack."""
    return project.root / HISTORY_DIR / (f"releases-{target}.json" if target else HISTORY_FILE)


def load_history(project: Project, target: str = "") -> History:
    path = history_path(project, target)
    if not path.is_file():
        return History(path)
    try:
        data = json.loads(path.read_text())
        return History(path, data.get("current"), [Release.from_dict(r) for r in data.get("releases", [])])
    except (ValueError, TypeError, AttributeError) as exc:
        raise MonteroError(f"the release history {path} is not readable: {exc}",
                           hint="fix or move the file; montero starts a new history without it") from exc


def save_history(history: History) -> None:
    """Written to a temporary file, then renamed: a crash never leaves half a history."""
    history.path.parent.mkdir(parents=True, exist_ok=True)
    tmp = history.path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(history.to_dict(), indent=2) + "\n")
    os.replace(tmp, history.path)


def keep_count(project: Project | None = None) -> int:
    """MONTERO_KEEP_RELEASES from the environment, then the project's .env (default 5)."""
    raw = os.environ.get("MONTERO_KEEP_RELEASES", "").strip()
    if not raw and project is not None:
        from montero_ops.services.backups.sqlite_db import read_env_file

        raw = read_env_file(project.env_file).get("MONTERO_KEEP_RELEASES", "").strip()
    if not raw:
        return DEFAULT_KEEP
    if not raw.isdigit() or int(raw) < 2:
        raise UsageError(f"MONTERO_KEEP_RELEASES={raw} is not a whole number of at least 2",
                         hint="keep at least the current release and the one to roll back to")
    return int(raw)


def configured_image(project: Project) -> str:
    """The tag compose starts the app from (MONTERO_APP_IMAGE, else the per-project default)."""
    from montero_ops.project import configured_app_image

    return configured_app_image(project)


def release_tag(configured: str, release_id: str) -> str:
    """The immutable tag of a release: the configured image's repository, the release id as tag
    (`myproject-app:latest` -> `myproject-app:3f2a9c1d7b20-20260101T120000`). The only place
    montero names a release image."""
    return f"{image_repo(configured)}:{release_id}"


def image_repo(image: str) -> str:
    """`registry:5000/montero-app:latest` -> `registry:5000/montero-app` (a colon after the last / is the tag)."""
    head, sep, tail = image.rpartition(":")
    return head if sep and "/" not in tail else image


def git_commit(root: Path) -> str | None:
    if not (root / ".git").exists():
        return None
    try:
        done = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_release_id(commit: str | None, when: datetime, taken: set[str]) -> str:
    """`<commit>-<UTC time>` (or `r-<UTC time>` outside git): sortable, unique, a valid tag."""
    base = f"{commit or 'r'}-{when.strftime('%Y%m%dT%H%M%S')}"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{base}-{n}"
    return candidate


def deployer() -> str:
    """Who or what deployed: the user and host, or the CI system."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    where = "ci" if os.environ.get("CI") else socket.gethostname()
    return f"{user}@{where}"


def iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def prune_plan(history: History, keep: int) -> list[Release]:
    """Built releases beyond the newest `keep` whose image can go: never the current one, the one
    a rollback would use, or an image a kept release still names. Rollback records name another
    release's image, so they are never pruned themselves."""
    built = [r for r in reversed(history.releases) if r.kind != "rollback" and not r.pruned]
    protected = {history.current, getattr(history.previous(), "id", None)}
    kept = [r for r in built[:keep]] + [r for r in built[keep:] if r.id in protected]
    in_use = {r.image for r in kept}
    return [r for r in built[keep:] if r.id not in protected and r.image not in in_use]
