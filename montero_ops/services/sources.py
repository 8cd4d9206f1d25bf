"""What goes into the app image, by content: a digest montero stamps on the image as a label.

`doctor`'s images.app compares this digest of the checkout with the label of the built image, so
byte-identical code restored from a backup or a `git checkout` (new file times, same bytes) is not
called stale, and an edit is found even when file times say otherwise. The file set follows
.dockerignore (backend/ and docker/entrypoint.sh, without caches, tests, logs, .env), plus the
Dockerfile itself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LABEL = "org.montero.sources"
ENV_VAR = "MONTERO_SOURCES_DIGEST"  # docker/compose.yml: build.labels
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", "node_modules",
             ".venv", "venv", "tests", ".git", "htmlcov"}
SKIP_NAMES = {".env", ".coverage"}
SKIP_SUFFIXES = (".pyc", ".log")


def image_sources(root: Path) -> list[Path]:
    """The files that shape the app image, sorted (relative paths are what the digest names)."""
    found = [root / "docker" / "Dockerfile", root / "docker" / "entrypoint.sh"]
    backend = root / "backend"
    if backend.is_dir():
        for path in backend.rglob("*"):
            rel = path.relative_to(root).parts
            if (not path.is_file() or SKIP_DIRS.intersection(rel) or path.name in SKIP_NAMES
                    or path.name.endswith(SKIP_SUFFIXES) or any(p.endswith(".egg-info") for p in rel)):
                continue
            found.append(path)
    return sorted((p for p in found if p.is_file()), key=lambda p: p.relative_to(root).as_posix())


def sources_digest(root: Path) -> str:
    """sha256 over (relative path, content) of every image source: names and bytes, never times."""
    digest = hashlib.sha256()
    for path in image_sources(root):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return "sha256:" + digest.hexdigest()


def stamp_sources(root: Path) -> str:
    """Before a compose build: the digest reaches the image label through the compose file."""
    value = sources_digest(root)
    os.environ[ENV_VAR] = value
    return value
