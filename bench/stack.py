"""A throwaway copy of the project with its own compose project name, ports and .env.

Benchmarks never touch the checkout's own stack: each Stack copies the project to a
temp folder, writes a .env there (fresh SECRET_KEY, free loopback ports, local base
images), and drives it with both `montero` and plain `docker compose`, which see the
same files, env file and project name. `close()` removes containers, volumes, the
images it built and the folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any

from bench.lib import BenchError, env_with, free_port, log, run

REPO = Path(__file__).resolve().parent.parent
IGNORE = shutil.ignore_patterns(".git", "data", "logs", "backups", "__pycache__", "*.pyc", ".venv", "venv",
                                ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules", ".env", "*.egg-info")
BASE_IMAGE = os.environ.get("MONTERO_BENCH_BASE_IMAGE", "montero-base:bookworm")
# One app image shared by every bench stack of this run (built once, removed at the end).
APP_IMAGE = f"montero-bench-app:{os.getpid()}"


def image_overrides() -> dict[str, str]:
    """Use the local base image for every service when it exists (no registry here)."""
    proc = run(["docker", "image", "inspect", BASE_IMAGE], check=False)
    if proc.returncode != 0:
        return {"MONTERO_APP_IMAGE": APP_IMAGE}
    return {"MONTERO_APP_IMAGE": APP_IMAGE, "MONTERO_PYTHON_IMAGE": BASE_IMAGE, "MONTERO_REDIS_IMAGE": BASE_IMAGE, "MONTERO_NGINX_IMAGE": BASE_IMAGE}


class Stack:
    def __init__(self, tag: str, source: Path = REPO, app_image: str | None = None) -> None:
        self.name = f"montero-bench-{tag}-{os.getpid()}"
        self.root = Path(tempfile.mkdtemp(prefix=f"montero-bench-{tag}-"))
        shutil.copytree(source, self.root, dirs_exist_ok=True, ignore=IGNORE)
        for folder in ("data", "logs", "backups"):
            (self.root / folder).mkdir(exist_ok=True)
            os.chown(self.root / folder, 1000, 1000) if os.geteuid() == 0 else None
        self.app_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.vars: dict[str, str] = {
            "COMPOSE_PROJECT_NAME": self.name,
            "MONTERO_PROJECT_DIR": str(self.root),
            "MONTERO_APP_PORTS": str(self.app_port),
            "MONTERO_HTTP_PORT": str(self.http_port),
            "MONTERO_HTTPS_PORT": str(self.https_port),
            **image_overrides(),
        }
        if app_image:
            self.vars["MONTERO_APP_IMAGE"] = app_image
        self._write_env()
        self.env = env_with(self.vars)
        self._built_images: set[str] = set()

    def _write_env(self) -> None:
        example = self.root / ".env.example"
        lines = example.read_text().splitlines() if example.is_file() else []
        ours = {
            "SECRET_KEY": secrets.token_hex(32),
            "FLASK_ENV": "production",
            "LOG_LEVEL": "WARNING",
            # Load tests would otherwise measure 429s; the limiter's Redis check still runs per request.
            "DEFAULT_RATE_LIMIT": "10000000 per minute",
            # The bench registers its own account through the API (no admin needed).
            "REGISTRATION_OPEN": "true",
            **{k: v for k, v in self.vars.items() if k != "MONTERO_PROJECT_DIR"},
        }
        kept = [ln for ln in lines if ln.split("=", 1)[0].strip() not in ours]
        env_file = self.root / ".env"
        env_file.write_text("\n".join(kept + [f"{k}={v}" for k, v in ours.items()]) + "\n")
        env_file.chmod(0o600)

    # --- commands -------------------------------------------------------------------------
    def compose_cmd(self, *args: str, profiles: tuple[str, ...] = ()) -> list[str]:
        cmd = ["docker", "compose", "--project-directory", str(self.root), "-f",
               str(self.root / "docker" / "compose.yml"), "--env-file", str(self.root / ".env"), "-p", self.name]
        for profile in profiles:
            cmd += ["--profile", profile]
        return cmd + list(args)

    def montero_cmd(self, *args: str) -> list[str]:
        montero = shutil.which("montero") or "montero"
        return [montero, "--project-dir", str(self.root), "--project-name", self.name, *args]

    def compose(self, *args: str, profiles: tuple[str, ...] = (), timeout: float = 900, check: bool = True) -> str:
        return run(self.compose_cmd(*args, profiles=profiles), env=self.env, timeout=timeout, check=check).stdout

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.compose("config", "--format", "json", profiles=("production",)))
        return data

    def app_image(self) -> str:
        image = self.config()["services"]["app"].get("image")
        return str(image or f"{self.name}-app")

    def gunicorn_workers(self) -> int:
        """gunicorn.conf.py's rule: GUNICORN_WORKERS, else 2 x cores + 1 (cores as the container sees them)."""
        env = self.config()["services"]["app"].get("environment") or {}
        raw = env.get("GUNICORN_WORKERS") if isinstance(env, dict) else None
        return int(raw) if raw else 2 * (os.cpu_count() or 1) + 1

    # --- lifecycle ------------------------------------------------------------------------
    def build(self, *services: str, no_cache: bool = False) -> None:
        args = ["build", *(["--no-cache"] if no_cache else []), *services]
        self.compose(*args, timeout=1800)
        self._built_images.add(self.app_image())

    def up(self, profiles: tuple[str, ...] = (), timeout: int = 180) -> None:
        self.prepare_redis_volume()
        self.compose("up", "-d", "--wait", "--wait-timeout", str(timeout), profiles=profiles, timeout=timeout + 60)

    def prepare_redis_volume(self) -> None:
        """What `montero up` does before starting (services/redis_volume.py): Redis runs non-root, and a
        new volume on an image without /data (montero-base) is root's, so plain compose would crash-loop it."""
        from montero_ops.services import redis_volume

        found = redis_volume.redis_volume(self.config(), self.name)
        if found is None:
            return
        volume, image = found
        if run(["docker", "volume", "inspect", volume], check=False).returncode != 0:
            run(["docker", "volume", "create", "--label", f"com.docker.compose.project={self.name}",
                 "--label", f"com.docker.compose.volume={redis_volume.VOLUME_KEY}", volume])
        run(["docker", *redis_volume.chown_command(volume, image)], timeout=120)

    def down(self, volumes: bool = True) -> None:
        self.compose("down", *(["--volumes"] if volumes else []), "--remove-orphans", "--timeout", "5",
                     profiles=("production",), check=False, timeout=180)

    def stop(self) -> None:
        """Containers removed, volumes kept (Redis's stays prepared): the next `up` starts from the images."""
        self.down(volumes=False)

    def container_ids(self) -> list[str]:
        out = run(["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={self.name}"]).stdout
        return out.split()

    def close(self, remove_images: bool = True) -> None:
        """Everything this stack started or built goes away; failures here are only logged."""
        try:
            self.down()
            ids = self.container_ids()
            if ids:
                run(["docker", "rm", "-f", *ids], check=False)
            if remove_images:
                for image in self._built_images:
                    run(["docker", "image", "rm", "-f", image], check=False)
        except BenchError as exc:
            log(f"cleanup of {self.name}: {exc}")
        # Files written by the container (uid 1000) are removable by root; ignore the rest.
        shutil.rmtree(self.root, ignore_errors=True)
