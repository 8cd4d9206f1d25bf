"""What every check reads: the project, its .env, the engine (when reachable), cached queries.

Queries shared by several checks (the project's containers and their inspect documents,
`docker compose config`) are made once, under a lock, because checks run in threads.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from montero_ops.dockerapi import DockerAPI
from montero_ops.project import Project
from montero_ops.services import redact

T = TypeVar("T")
DEFAULT_APP_PORTS = "5000-5009"
DEFAULT_HTTP_PORT = "80"
DEFAULT_HTTPS_PORT = "443"


def parse_env_file(path: Path) -> dict[str, str]:
    """A .env file as compose reads it (the CLI's one parser, services/envfile.py)."""
    from montero_ops.services.envfile import parse_env

    return parse_env(path.read_text(errors="replace"))


def run_cmd(cmd: list[str], timeout: float) -> tuple[int, str, str]:
    """Run a command with a hard timeout: (exit code, stdout, stderr). The docker CLI boundary."""
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout or "", proc.stderr or ""


@dataclass
class Context:
    project: Project
    production: bool = False
    timeout: float = 8.0
    engine: DockerAPI | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _key_locks: dict[str, threading.Lock] = field(default_factory=dict, repr=False)

    # -- configuration -------------------------------------------------------------------------
    @property
    def env_file_values(self) -> dict[str, str]:
        """The .env file's values ({} when the file is absent or unreadable)."""

        def load() -> dict[str, str]:
            try:
                return parse_env_file(self.project.env_file)
            except OSError:
                return {}

        return self._cached("env", load)

    def setting(self, name: str, default: str = "") -> str:
        """A value as compose interpolates it: the shell environment wins over the .env file."""
        if name in os.environ:
            return os.environ[name]
        return self.env_file_values.get(name, default)

    def secret_values(self) -> list[str]:
        return [v for k, v in self.env_file_values.items() if redact.is_secret(k) and len(v) >= 4]

    def scrub(self, text: str) -> str:
        """Never let a secret reach the output: mask NAME=value lines and known secret values."""
        return redact.mask_values(redact.redact_text(text), self.secret_values(), min_length=4)

    # -- docker --------------------------------------------------------------------------------
    @property
    def docker_up(self) -> bool:
        return self.engine is not None

    def containers(self) -> list[dict[str, Any]]:
        """Inspect documents of the project's containers (running or not)."""

        def load() -> list[dict[str, Any]]:
            assert self.engine is not None
            listed = self.engine.project_containers(self.project.name, all=True)
            return [self.engine.inspect(c["Id"]) for c in listed]

        return self._cached("containers", load)

    def service_containers(self, service: str) -> list[dict[str, Any]]:
        return [c for c in self.containers() if service_of(c) == service]

    def running(self, service: str) -> dict[str, Any] | None:
        for c in self.service_containers(service):
            if c.get("State", {}).get("Running"):
                return c
        return None

    def compose_config(self) -> dict[str, Any] | None:
        """`docker compose config` as JSON (static: works with the stack down), or None."""

        def load() -> dict[str, Any] | None:
            import json

            cmd = ["docker", "compose", "--project-directory", str(self.project.root)]
            for f in self.project.compose_files:
                cmd += ["-f", str(f)]
            if self.project.env_file.is_file():
                cmd += ["--env-file", str(self.project.env_file)]
            if self.production:
                cmd += ["--profile", "production"]
            cmd += ["-p", self.project.name, "config", "--format", "json"]
            try:
                code, out, _ = run_cmd(cmd, self.timeout)
            except (OSError, subprocess.TimeoutExpired):
                return None
            if code != 0:
                return None
            try:
                return dict(json.loads(out))
            except ValueError:
                return None

        return self._cached("compose_config", load)

    def _cached(self, key: str, load: Callable[[], T]) -> T:
        # One lock per key: a slow `compose config` must not hold up the container queries.
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            if key not in self._cache:
                self._cache[key] = load()
            return cast(T, self._cache[key])


def service_of(container: dict[str, Any]) -> str:
    labels = (container.get("Config") or {}).get("Labels") or {}
    return str(labels.get("com.docker.compose.service", ""))


def container_name(container: dict[str, Any]) -> str:
    return str(container.get("Name", "")).lstrip("/") or str(container.get("Id", ""))[:12]
