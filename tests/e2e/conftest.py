"""End-to-end harness: a real Docker Engine, isolated stack projects, the real `montero` CLI.

Fixtures
  docker_engine   session: the engine answers and Compose v2 is there. Under CI=true a
                  missing engine FAILS the test; elsewhere it skips with how to get one.
  stack_env       session: image overrides (base images chosen by scripts/setup.sh) and
                  the shared app image tag, as environment variables.
  app_image       session: the app image, built once from this checkout; every test
                  project uses the same tag, so `up` never rebuilds.
  stack_project   function: a temp copy of the project with a unique compose project
                  name and free host ports; `run_montero(...)` runs the CLI against it
                  and `compose(...)` runs plain docker compose. Teardown always runs
                  `docker compose down -v --remove-orphans`.

Every test in tests/e2e gets the `e2e` marker automatically.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
APP_IMAGE = os.environ.get("MONTERO_E2E_APP_IMAGE", "montero-app:e2e")
# What a test project holds: enough to build and run the stack, nothing else.
PROJECT_PARTS = ("docker", "backend", ".dockerignore", ".env.example")
IMAGE_DEFAULTS = {
    "MONTERO_PYTHON_IMAGE": "python:3.11-slim",
    "MONTERO_REDIS_IMAGE": "redis:7-alpine",
    "MONTERO_NGINX_IMAGE": "nginx:alpine",
}
GET_ENGINE = "run `bash scripts/setup.sh` (or `montero setup`): it installs/starts dockerd and the Compose v2 plugin"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.e2e)


def _run(cmd: list[str], timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "the docker command is not installed"
    try:
        info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer within 30s"
    if info.returncode != 0 or not info.stdout.strip():
        return "the Docker daemon is not reachable"
    compose = _run(["docker", "compose", "version", "--short"], timeout=30)
    if compose.returncode != 0:
        return "the Docker Compose v2 plugin is missing"
    return None


@pytest.fixture(scope="session")
def docker_engine() -> str:
    """The server version; fail (CI) or skip (elsewhere) when no engine can be had."""
    problem = _engine_problem()
    if problem:
        if IN_CI:
            pytest.fail(f"CI=true and {problem}: e2e tests must run in CI; {GET_ENGINE}", pytrace=False)
        pytest.skip(f"{problem}; {GET_ENGINE}")
    return _run(["docker", "info", "--format", "{{.ServerVersion}}"]).stdout.strip()


def _image_exists(image: str) -> bool:
    return _run(["docker", "image", "inspect", image]).returncode == 0


def _dotenv_images() -> dict[str, str]:
    """Image overrides scripts/setup.sh wrote into the checkout's .env."""
    found: dict[str, str] = {}
    env_file = REPO / ".env"
    if env_file.is_file():
        for line in env_file.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() in IMAGE_DEFAULTS and value.strip():
                found[key.strip()] = value.strip()
    return found


def _codename() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("VERSION_CODENAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "bookworm"


@pytest.fixture(scope="session")
def stack_env(docker_engine: str) -> dict[str, str]:
    """MONTERO_*_IMAGE for every test project: environment, then .env, then what exists locally."""
    chosen: dict[str, str] = {}
    from_file = _dotenv_images()
    local_base = f"montero-base:{_codename()}"
    for var, default in IMAGE_DEFAULTS.items():
        image = os.environ.get(var) or from_file.get(var) or default
        if not _image_exists(image) and _image_exists(local_base):
            image = local_base
        if not _image_exists(image):
            pytest.fail(f"image {image} is missing and cannot be pulled here; run `bash scripts/setup.sh`",
                        pytrace=False)
        chosen[var] = image
    chosen["MONTERO_APP_IMAGE"] = APP_IMAGE
    return chosen


@pytest.fixture(scope="session")
def app_image(stack_env: dict[str, str]) -> str:
    """Build the app image once per session (BuildKit's cache makes a rebuild cheap)."""
    from montero_ops.services.sources import ENV_VAR, sources_digest

    # The content label `montero build` stamps (doctor's images.app compares it with the checkout):
    # without it doctor falls back to file times, which a cached build on a reused machine fails.
    env = {**os.environ, **stack_env, "DOCKER_BUILDKIT": "1", ENV_VAR: sources_digest(REPO)}
    cmd = ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "docker" / "compose.yml"),
           "-p", "montero-e2e-build", "--env-file", os.devnull, "build", "app"]
    done = _run(cmd, timeout=1200, env=env)
    if done.returncode != 0:
        pytest.fail(f"building {APP_IMAGE} failed:\n{(done.stdout + done.stderr)[-3000:]}", pytrace=False)
    return APP_IMAGE


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def free_port_block(size: int) -> int:
    """First port of `size` consecutive free ports (random start, so parallel runs rarely meet)."""
    for _ in range(200):
        start = random.randint(20000, 60000 - size)
        if all(_port_free(p) for p in range(start, start + size)):
            return start
    raise RuntimeError(f"no {size} consecutive free ports found")


@dataclass
class StackProject:
    """One isolated copy of the project: its own compose project name, ports and folders."""

    root: Path
    name: str
    env: dict[str, str]
    app_ports: tuple[int, int]
    http_port: int
    https_port: int
    compose_files: list[Path] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)

    def run_montero(
        self,
        *args: str,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = 900,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real `montero` CLI (a subprocess) against this project."""
        cmd = [sys.executable, "-m", "montero_ops", "--project-dir", str(self.root), *args]
        return _run(cmd, timeout=timeout, input=input, env={**self.env, **(env or {})}, cwd=self.root)

    def compose(self, *args: str, env: Mapping[str, str] | None = None,
                timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Plain `docker compose` on this project, as montero runs it (project dir = root)."""
        cmd = ["docker", "compose", "-p", self.name, "--project-directory", str(self.root)]
        for f in self.compose_files:
            cmd += ["-f", str(f)]
        for profile in self.profiles:
            cmd += ["--profile", profile]
        env_file = self.root / ".env"
        cmd += ["--env-file", str(env_file) if env_file.is_file() else os.devnull]
        if args and args[0] == "up":
            self.prepare_redis_volume()
        return _run([*cmd, *args], timeout=timeout, env={**self.env, **(env or {})}, cwd=self.root)

    def prepare_redis_volume(self) -> None:
        """What `montero up` does before plain compose starts the non-root Redis (services/redis_volume.py)."""
        from montero_ops.services.redis_volume import chown_command

        volume = f"{self.name}_redis-data"
        _run(["docker", "volume", "create", "--label", f"com.docker.compose.project={self.name}",
              "--label", "com.docker.compose.volume=redis-data", volume])
        image = self.env.get("MONTERO_REDIS_IMAGE") or "redis:7-alpine"
        _run(["docker", *chown_command(volume, image)], timeout=120)

    def write_env(self, **values: str) -> Path:
        """Create or update .env (mode 0600) with KEY=VALUE lines; other lines are kept."""
        path = self.root / ".env"
        lines = path.read_text().splitlines() if path.exists() else []
        lines = [ln for ln in lines if ln.partition("=")[0] not in values]
        lines += [f"{k}={v}" for k, v in values.items()]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def published_port(self, service: str = "app", container_port: int = 5000, index: int = 1) -> int:
        done = self.compose("port", "--index", str(index), service, str(container_port), timeout=60)
        if done.returncode != 0 or ":" not in done.stdout:
            raise AssertionError(f"{service}:{container_port} is not published: {done.stderr.strip()}")
        return int(done.stdout.strip().rsplit(":", 1)[1])

    def url(self, path: str = "/health", service: str = "app", index: int = 1) -> str:
        """Address of `path` on the host: the app's published port, or nginx's (service="nginx")."""
        port = self.http_port if service == "nginx" else self.published_port("app", 5000, index)
        return f"http://127.0.0.1:{port}{path}"

    def get(self, path: str = "/health", service: str = "app", timeout: float = 10) -> tuple[int, str, dict[str, str]]:
        return http_get(self.url(path, service), timeout=timeout)

    def wait_http(self, path: str = "/health", service: str = "app", timeout: float = 60,
                  expect: int = 200) -> tuple[int, str]:
        return wait_http(self.url(path, service), timeout=timeout, expect=expect)

    def logs(self, *services: str, tail: int = 80) -> str:
        done = self.compose("logs", "--no-color", "--tail", str(tail), *services, timeout=60)
        return done.stdout + done.stderr


def http_get(url: str, timeout: float = 10) -> tuple[int, str, dict[str, str]]:
    """(status, body, headers) of a GET; HTTP errors are answers too, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode(errors="replace"), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace"), dict(err.headers)


def wait_http(url: str, timeout: float = 60, expect: int = 200) -> tuple[int, str]:
    """Poll `url` until it answers `expect` (or the bound runs out: the last answer is returned)."""
    deadline = time.monotonic() + timeout
    last: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        try:
            status, body, _ = http_get(url, timeout=5)
            last = (status, body)
            if status == expect:
                return last
        except OSError as exc:
            last = (0, str(exc))
        time.sleep(1)
    return last


def json_of(body: str) -> Any:
    return json.loads(body)


def _make_data_dirs(root: Path) -> None:
    """./data and ./logs are written by the container's uid 1000."""
    for name in ("data", "logs", "backups"):
        path = root / name
        path.mkdir(exist_ok=True)
        if name == "backups":
            continue
        if os.geteuid() == 0:
            os.chown(path, 1000, 1000)
        else:
            path.chmod(0o777)


@pytest.fixture
def stack_project(tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str],
                  app_image: str) -> Iterator[StackProject]:
    yield from _stack_project(tmp_path_factory, stack_env)


@pytest.fixture(scope="module")
def module_stack_project(tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str],
                         app_image: str) -> Iterator[StackProject]:
    """Like stack_project, shared by a module's ordered steps (one stack, less CI time)."""
    yield from _stack_project(tmp_path_factory, stack_env)


def _stack_project(tmp_path_factory: pytest.TempPathFactory,
                   stack_env: dict[str, str]) -> Iterator[StackProject]:
    name = f"mte2e-{uuid.uuid4().hex[:10]}"
    root = tmp_path_factory.mktemp(name, numbered=False)
    for part in PROJECT_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, root / part, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "certs", "data", "logs", ".pytest_cache"))
        elif src.is_file():
            shutil.copy2(src, root / part)
    _make_data_dirs(root)
    base = free_port_block(12)
    env = {
        **os.environ,
        **stack_env,
        "COMPOSE_PROJECT_NAME": name,
        "MONTERO_APP_PORTS": f"{base}-{base + 9}",
        "MONTERO_HTTP_PORT": str(base + 10),
        "MONTERO_HTTPS_PORT": str(base + 11),
        "NO_COLOR": "1",
    }
    env.pop("MONTERO_PROJECT_DIR", None)
    project = StackProject(root=root, name=name, env=env, app_ports=(base, base + 9),
                           http_port=base + 10, https_port=base + 11,
                           compose_files=[root / "docker" / "compose.yml"])
    try:
        yield project
    finally:
        # Always, whatever the test did: containers, networks, volumes, nginx included.
        project.compose("--profile", "production", "down", "-v", "--remove-orphans", "--timeout", "5",
                        timeout=180)
        shutil.rmtree(root, ignore_errors=True)


# The three-node cluster (session scope, once for every `cluster` module).
from tests.e2e.cluster import cluster_fixture  # noqa: F401
