"""Machine set-up: thin wrappers around scripts/setup.sh and scripts/bootstrap-images.sh.

The scripts are the single source of truth (the Makefile, CI and users without the
CLI installed run them directly); these functions only find and run them, with their
output going straight to the terminal.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from montero_ops.errors import CommandFailed, UsageError

SETUP_SCRIPT = "setup.sh"
BOOTSTRAP_SCRIPT = "bootstrap-images.sh"


def find_script(name: str, root: Path | None = None) -> Path:
    """scripts/<name> in the project, else beside the installed package (editable install)."""
    candidates = []
    if root is not None:
        candidates.append(root / "scripts" / name)
    candidates.append(Path(__file__).resolve().parents[2] / "scripts" / name)
    for path in candidates:
        if path.is_file():
            return path
    raise UsageError(
        f"scripts/{name} not found",
        hint="run montero from a checkout of the project (or pass --project-dir)",
    )


def run_script(script: Path, args: list[str], env_extra: dict[str, str] | None = None) -> None:
    """Run a set-up script with bash, streaming its output; a failure is exit 1 with its name."""
    bash = shutil.which("bash")
    if bash is None:
        raise UsageError("bash is not installed", hint="install bash (apt-get install bash)")
    env = {**os.environ, **(env_extra or {})}
    completed = subprocess.run([bash, str(script), *args], env=env, check=False)
    if completed.returncode != 0:
        raise CommandFailed(
            f"{script.name} failed with exit code {completed.returncode}",
            hint="read the last [setup] lines above: each step says what it needs",
            exit_code=completed.returncode if completed.returncode in (2, 3) else 1,
        )


def setup(root: Path | None, skip_images: bool = False) -> None:
    run_script(find_script(SETUP_SCRIPT, root), ["--skip-images"] if skip_images else [])


def bootstrap_images(root: Path | None, force: bool = False, image: str | None = None) -> None:
    """IMAGE: the tag to (re)build (the script's MONTERO_BASE_IMAGE; default montero-base:<codename>)."""
    run_script(find_script(BOOTSTRAP_SCRIPT, root), ["--force"] if force else [],
               {"MONTERO_BASE_IMAGE": image} if image else None)
