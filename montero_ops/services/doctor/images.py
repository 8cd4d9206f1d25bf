"""Check 11: the app image holds other sources than the checkout (code or requirements changed since the build).

Compared by content: the image's `org.montero.sources` label (the digest montero stamps when it
builds, services/sources.py) against the same digest of the checkout. An image built without the
label (a plain `docker compose build`) falls back to comparing file times, and says so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from montero_ops.project import default_app_image
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, failed, passed, warned
from montero_ops.services.sources import LABEL, sources_digest

SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", "node_modules", ".venv", "venv"}
# Zero downtime: `up --build` recreates every replica at once (an outage, and a scaled app drops to one).
# `montero deploy` builds a release from the checkout, backs up and tests its migrations, replaces the
# replicas one at a time behind nginx and rolls back by itself when one fails. It needs the app running;
# a stopped stack only needs the image (its next `montero up` starts on it).
REBUILD = "montero deploy   # builds the checkout, replaces the replicas one at a time, rolls back on failure"
BUILD_ONLY = "montero build app   # the stack is not running: the next `montero up` starts on the new image"
RECREATE = "montero restart --rolling   # replaces the replicas one at a time on the new image"


def parse_created(text: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds ('2026-11-28T04:20:00.123456789Z')."""
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        frac = "".join(ch for ch in frac if ch.isdigit())[:6]
        text = f"{head}.{frac}"
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def newest_source(root: Path) -> tuple[Path, float] | None:
    """The most recently modified file that goes into the app image."""
    candidates = [root / "docker" / "Dockerfile", root / "docker" / "entrypoint.sh"]
    backend = root / "backend"
    if backend.is_dir():
        for path in backend.rglob("*"):
            if path.is_file() and not SKIP_DIRS.intersection(path.parts) and path.suffix not in (".pyc", ".db", ".log"):
                candidates.append(path)
    best: tuple[Path, float] | None = None
    for path in candidates:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue
        if best is None or mtime > best[1]:
            best = (path, mtime)
    return best


def app_image_name(ctx: Context) -> str:
    config = ctx.compose_config() or {}
    image = ((config.get("services") or {}).get("app") or {}).get("image")
    return str(image or ctx.setting("MONTERO_APP_IMAGE", default_app_image(ctx.project.name)))


def check_images(ctx: Context) -> list[Finding]:
    assert ctx.engine is not None
    name = app_image_name(ctx)
    image = ctx.engine.image_inspect(name)
    if image is None:
        return [warned("images.app", f"the app image {name} is not built yet", "montero build app")]
    built = parse_created(str(image.get("Created", "")))
    when = built.strftime("%Y-%m-%d %H:%M UTC")
    # In production a stale image means the deployed code is not the code in the repository.
    make = failed if ctx.production else warned
    stamped = ((image.get("Config") or {}).get("Labels") or {}).get(LABEL) or ""
    rebuild = REBUILD if ctx.running("app") is not None else BUILD_ONLY
    if stamped:
        current = sources_digest(ctx.project.root)
        if current != stamped:
            return [make("images.app", f"the app image {name} (built {when}) holds other sources than the checkout "
                         f"(content digest {stamped[7:19]} in the image, {current[7:19]} here)", rebuild)]
        same = "has the same sources as the checkout (compared by content)"
    else:
        newest = newest_source(ctx.project.root)
        if newest is not None and newest[1] > built.timestamp() + 1:
            rel = newest[0].relative_to(ctx.project.root)
            changed = datetime.fromtimestamp(newest[1], UTC).strftime("%Y-%m-%d %H:%M UTC")
            return [make("images.app", f"the app image {name} (built {when}) is older than its sources: {rel} changed "
                         f"{changed} (compared by time: the image was not built by montero)", rebuild)]
        same = "is newer than its sources (by time; `montero build app` records a content digest)"
    stale = [c for c in ctx.service_containers("app") if c.get("Image") and c.get("Image") != image.get("Id")]
    if stale:
        return [
            warned(
                "images.app",
                f"{len(stale)} app container(s) run an older build than {name}",
                RECREATE,
            )
        ]
    return [passed("images.app", f"the app image {name} (built {when}) {same}")]
