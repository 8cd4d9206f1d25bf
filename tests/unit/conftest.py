"""Unit-test fixtures: a throwaway project and fakes at the docker boundary only.

The real Typer app runs; only python-on-whales' `run` and services/dockercmd.run (the
subprocess boundary) and the Engine API clients are replaced, so the exact docker command lines can be asserted.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from montero_ops.state import State

COMPOSE = """services:
  app:
    image: montero-app:latest
    healthcheck:
      test: ["CMD", "true"]
  redis:
    image: redis:7-alpine
"""


@pytest.fixture(autouse=True)
def _fixed_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Rich at a fixed width, no colour, no forced terminal; no outside project settings;
    montero's cache (compose's service list) in a temp folder, not the user's."""
    from montero_ops.services import redact

    redact.forget()  # secret values learnt from one test's .env must not leak into the next
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("TERMINAL_WIDTH", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    for name in ("MONTERO_PROJECT_DIR", "COMPOSE_PROJECT_NAME", "FORCE_COLOR", "TTY_COMPATIBLE", "DOCKER_HOST"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "shop"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text(COMPOSE)
    (root / "backend").mkdir()
    monkeypatch.chdir(root)
    return root


@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `docker` on PATH that fails loudly: python-on-whales needs one to build commands,
    and nothing in a unit test may reach a real engine."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\necho 'unit tests must not run docker' >&2\nexit 97\n")
    docker.chmod(docker.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return docker


@dataclass
class DockerCalls:
    """Records every command python-on-whales would run; answers from `responses`."""

    calls: list[list[str]] = field(default_factory=list)
    kwargs: list[dict[str, Any]] = field(default_factory=list)
    responses: list[tuple[Callable[[list[str]], bool], Any]] = field(default_factory=list)

    def respond(self, match: Callable[[list[str]], bool], result: Any) -> None:
        """`result` is returned, or raised when it is an exception."""
        self.responses.append((match, result))

    def __call__(self, args: list[Any], *a: Any, **kw: Any) -> Any:
        cmd = [str(x) for x in args]
        if cmd and Path(cmd[0]).name == "docker":  # python-on-whales resolves the full path
            cmd[0] = "docker"
        self.calls.append(cmd)
        self.kwargs.append(kw)
        for match, result in self.responses:
            if match(cmd):
                if isinstance(result, BaseException):
                    raise result
                return result(cmd) if callable(result) else result
        return ""


@pytest.fixture(autouse=True)
def _swarm_queries_reach_the_docker_fake(monkeypatch: pytest.MonkeyPatch) -> None:
    """python-on-whales' typed swarm queries (`client.node.list()`, `client.service.list()`,
    `client.service.ps()`, `client.system.info()`, secret and config lists, and the inspects behind their models) run their docker command
    through the same patch point as the commands montero runs itself (services/dockercmd.run),
    so one fake answers both and the models parse what it returns."""
    import python_on_whales.components.config.cli_wrapper as config_cli
    import python_on_whales.components.node.cli_wrapper as node_cli
    import python_on_whales.components.secret.cli_wrapper as secret_cli
    import python_on_whales.components.service.cli_wrapper as service_cli
    import python_on_whales.components.system.cli_wrapper as system_cli
    import python_on_whales.components.task.cli_wrapper as task_cli

    from montero_ops.services import dockercmd

    def run(cmd: list[Any], *args: Any, **kwargs: Any) -> str:
        return dockercmd.run([str(part) for part in cmd])

    for module in (node_cli, service_cli, task_cli, system_cli, secret_cli, config_cli):
        monkeypatch.setattr(module, "run", run)


@pytest.fixture
def docker(monkeypatch: pytest.MonkeyPatch, fake_bin: Path, project: Path) -> DockerCalls:
    import python_on_whales.components.compose.cli_wrapper as compose_cli
    import python_on_whales.components.system.cli_wrapper as system_cli

    recorder = DockerCalls()
    monkeypatch.setattr(compose_cli, "run", recorder)
    monkeypatch.setattr(system_cli, "run", recorder)
    monkeypatch.setattr("montero_ops.services.dockercmd.run", recorder)  # the commands montero runs itself
    # The engine check has its own tests (test_errors); elsewhere the engine "is there".
    monkeypatch.setattr("montero_ops.client.require_engine", lambda client: None)
    return recorder


def container(
    service: str,
    number: int = 1,
    state: str = "running",
    health: str | None = "healthy",
    restarts: int = 0,
    exit_code: int = 0,
    project: str = "shop",
    health_log: list[dict[str, Any]] | None = None,
    env: list[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A (list entry, inspect document) pair as the Engine API returns them."""
    cid = f"{service}{number}".ljust(64, "0")
    name = f"{project}-{service}-{number}"
    entry = {
        "Id": cid,
        "Names": [f"/{name}"],
        "Image": f"{service}:latest",
        "State": state,
        "Status": "Up 2 minutes",
        "Labels": {"com.docker.compose.project": project, "com.docker.compose.service": service},
        "Ports": [{"IP": "0.0.0.0", "PrivatePort": 5000, "PublicPort": 5000, "Type": "tcp"}] if service == "app" else [],
    }
    st: dict[str, Any] = {"Status": state, "ExitCode": exit_code}
    if health:
        st["Health"] = {"Status": health, "Log": health_log or []}
    inspect = {
        "Id": cid,
        "Name": f"/{name}",
        "State": st,
        "RestartCount": restarts,
        "Config": {"Env": env or ["PATH=/usr/bin"]},
        "NetworkSettings": {"Networks": {f"{project}_default": {"IPAddress": "172.18.0.2"}}, "Ports": {}},
    }
    return entry, inspect


class FakeEngine:
    """Stands in for montero_ops.engine.Engine and dockerapi.DockerAPI; `timeline` lets state change between polls."""

    def __init__(self) -> None:
        self.timeline: list[list[tuple[dict[str, Any], dict[str, Any]]]] = [[]]
        self.volumes: list[str] = []
        self.polls = 0

    def set(self, *containers: tuple[dict[str, Any], dict[str, Any]]) -> None:
        self.timeline = [list(containers)]

    def _now(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        return self.timeline[min(self.polls, len(self.timeline) - 1)]

    def ping(self) -> None:
        pass

    def project_containers(self, project: str, all: bool = True) -> list[dict[str, Any]]:
        current = [entry for entry, _ in self._now() if entry["Labels"]["com.docker.compose.project"] == project]
        self.polls += 1
        return current

    def inspect(self, container_id: str) -> dict[str, Any]:
        for entry, doc in self._now():
            if entry["Id"].startswith(container_id) or doc["Name"] == f"/{container_id}":
                return doc
        raise AssertionError(f"unknown container {container_id}")

    def project_volumes(self, project: str) -> list[str]:
        return list(self.volumes)


@pytest.fixture
def cli_state() -> State:
    """The State every `cli` invocation starts from (its root `obj`): fixtures such as `engine`
    give it fake clients, which the root callback hands on to the command (docs/architecture.md)."""
    return State()


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch, project: Path, cli_state: State) -> FakeEngine:
    fake = FakeEngine()
    cli_state.engine_factory = lambda: fake  # type: ignore[assignment,return-value]  # the ps/health fast path
    cli_state.docker_factory = lambda: fake  # type: ignore[assignment,return-value]  # the docker SDK client
    monkeypatch.setattr("montero_ops.services.status.defined_services", lambda project: ["app", "redis"])
    monkeypatch.setattr("montero_ops.services.status.start_defined_services", lambda project: lambda: ["app", "redis"])
    monkeypatch.setattr("montero_ops.services.stack._sleep", lambda seconds: None)
    return fake


@pytest.fixture
def cli(cli_state: State) -> Callable[..., Result]:
    from montero_ops.cli import app

    runner = CliRunner()

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
        return runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False, obj=cli_state)

    return invoke


def compose_prefix(root: Path, *, env_file: bool = False, profiles: tuple[str, ...] = (),
                   files: tuple[Path, ...] = ()) -> list[str]:
    cmd = ["docker", "compose", "--file", str(root / "docker" / "compose.yml")]
    for extra in files:
        cmd += ["--file", str(extra)]
    for p in profiles:
        cmd += ["--profile", p]
    if env_file:
        cmd += ["--env-file", str(root / ".env")]
    return cmd + ["--project-name", root.name, "--project-directory", str(root)]


@pytest.fixture
def prefix(project: Path) -> list[str]:
    return compose_prefix(project)


def json_out(result: Result) -> Any:
    return json.loads(result.stdout)


@pytest.fixture
def no_tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    yield
