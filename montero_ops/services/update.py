"""`montero update`: a refreshed base image, a scanned release, then the same deploy as `montero deploy`.

The base image is what MONTERO_PYTHON_IMAGE names (python:3.11-slim by default). When a registry
answers it is pulled again; on hosts without one the stack runs on the local Debian base
(`montero-base:<codename>`, built by `montero images bootstrap`), which is rebuilt from the
current Debian packages instead. The new release is then built on it, scanned with Trivy when
Trivy is installed (a HIGH or CRITICAL finding stops the update before any replica changes,
unless --allow-vulnerable), and deployed (services/release_deploy.py).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from montero_ops.errors import CommandFailed, MonteroError, ToolMissing
from montero_ops.project import Project

Progress = Callable[[str], None]
DEFAULT_BASE = "python:3.11-slim"
LOCAL_BASE_PREFIX = "montero-base:"
PULL_TIMEOUT_S = 600


def base_image(project: Project) -> str:
    """MONTERO_PYTHON_IMAGE from the environment, then the project's .env."""
    from montero_ops.services.backups.sqlite_db import read_env_file

    return (os.environ.get("MONTERO_PYTHON_IMAGE") or read_env_file(project.env_file).get("MONTERO_PYTHON_IMAGE")
            or DEFAULT_BASE)


def _pull(image: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "pull", image], capture_output=True, text=True, timeout=PULL_TIMEOUT_S,
                          check=False)


def _bootstrap(project: Project, image: str) -> None:
    from montero_ops.services.setup import bootstrap_images

    # The tag the project builds on, not the script's default: MONTERO_PYTHON_IMAGE=montero-base:custom
    # must not rebuild montero-base:<codename>, which other projects on the host may use.
    bootstrap_images(project.root, force=True, image=image)


def refresh_base(project: Project, progress: Progress = lambda _m: None,
                 pull: Callable[[str], subprocess.CompletedProcess[str]] = _pull,
                 bootstrap: Callable[[Project, str], None] = _bootstrap) -> str:
    """Refresh the base image; returns one line saying how."""
    image = base_image(project)
    if image.startswith(LOCAL_BASE_PREFIX):
        progress(f"rebuilding the local base image {image} from the current Debian packages")
        bootstrap(project, image)
        return f"base image {image} rebuilt from the current Debian packages (no registry here)"
    progress(f"pulling the base image {image}")
    done = pull(image)
    if done.returncode != 0:
        lines = [ln.strip() for ln in (done.stderr + done.stdout).splitlines() if ln.strip()]
        raise MonteroError(
            f"cannot refresh the base image {image}: {lines[-1][:300] if lines else f'docker pull exit {done.returncode}'}",
            hint="no registry answers? build the local base (`montero images bootstrap`) and set "
                 "MONTERO_PYTHON_IMAGE=montero-base:bookworm in .env; nothing was changed",
        )
    return f"base image {image} pulled again"


class Vulnerable(MonteroError):
    """Trivy found HIGH/CRITICAL vulnerabilities in the new release (exit 1)."""


def scan_release(tag: str, allow_vulnerable: bool, notes: list[str],
                 scan: Callable[..., list[str]] | None = None) -> None:
    """Trivy on the new release image before any replica changes (called by deploy after the build)."""
    from montero_ops.services import scan as scanning

    run = scan or scanning.scan
    try:
        run(tag, severity="HIGH,CRITICAL", fail=True)
    except ToolMissing:
        notes.append("Trivy is not installed: the new release was not scanned (`montero scan` says how to add it)")
        return
    except CommandFailed as exc:
        if allow_vulnerable:
            notes.append(f"{exc.message}: deployed anyway (--allow-vulnerable)")
            return
        raise Vulnerable(f"{exc.message}: the update stopped before any replica changed",
                         hint="rebuild on a patched base, or pass --allow-vulnerable to deploy it anyway") from exc
    notes.append(f"Trivy found no HIGH or CRITICAL vulnerability in {tag}")
