"""What the root options decide, shared by every command through `ctx.obj`.

The State hands out the project and the three Docker clients, each built lazily, once,
the first time a command asks, so commands that need none (help, version, env) stay fast:

- `client()`: python-on-whales' DockerClient built from the project (compose, stack, swarm);
- `plain_client()`: a python-on-whales DockerClient without compose context, which needs no
  project (`version` and `logs --stack` outside a project, a swarm stack's typed reads);
- `docker()`: the docker SDK (dockerapi.DockerAPI) for Engine API reads and probes;
- `engine()`: the standard-library fast path, for `ps` and `health` only (engine.py).

Tests swap a client by giving the State a factory (`docker_factory=lambda: fake`), not by
patching module attributes; the root callback keeps the factories of a State passed as `obj`.
Services never build a client themselves: each takes the one its command got from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from montero_ops.errors import DockerUnavailable
from montero_ops.project import Project, find_project

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from montero_ops.dockerapi import DockerAPI
    from montero_ops.engine import Engine


@dataclass
class State:
    project_dir: str | None = None
    env_file: str | None = None
    project_name: str | None = None
    debug: bool = False
    verbose: bool = False
    engine_factory: Callable[[], Engine] | None = field(default=None, repr=False)
    docker_factory: Callable[[], DockerAPI] | None = field(default=None, repr=False)
    _project: Project | None = field(default=None, repr=False)
    _clients: dict[Any, DockerClient] = field(default_factory=dict, repr=False)
    _docker: DockerAPI | None = field(default=None, repr=False)
    _plain: DockerClient | None = field(default=None, repr=False)

    def project(self) -> Project:
        if self._project is None:
            self._project = find_project(self.project_dir, self.env_file, self.project_name)
            _learn_secrets(self._project)
        return self._project

    def client(self, project: Project | None = None, check: bool = True) -> DockerClient:
        """A DockerClient for the project (or a variant of it, e.g. with profiles).

        With check=True the daemon and the Compose plugin are verified first
        (exit 3 with the fix when either is missing).
        """
        from montero_ops.client import build_client, require_engine

        project = project or self.project()
        if self.verbose:
            _log_docker_commands()
        if project not in self._clients:
            from montero_ops.services.envfile import require_valid_templates

            # Compose prints a malformed value in its own error, straight to the terminal of a
            # streamed command (up, build…), where montero cannot mask it: refuse before it runs.
            require_valid_templates(project)
            client = build_client(project)
            if check:
                require_engine(client)
            self._clients[project] = client
        return self._clients[project]

    def plain_client(self) -> DockerClient:
        """python-on-whales without compose context; no project needed (DOCKER_HOST and
        --context reach it through the environment, as for every docker command)."""
        if self._plain is None:
            from montero_ops.client import plain_client

            self._plain = plain_client()
        return self._plain

    def engine(self, check: bool = True) -> Engine:
        """The fast-path Engine API client (`ps`, `health`); pinged first (exit 3 when down).

        Every caller works on the project, so the project is found first: "no project here"
        (exit 4) is the answer in a wrong folder whether or not Docker runs, not exit 3.
        """
        self.project()
        if self.engine_factory is not None:
            eng = self.engine_factory()
        else:
            from montero_ops.engine import Engine

            eng = Engine()
        if check:
            self._ping(eng)
        return eng

    def docker(self, check: bool = True) -> DockerAPI:
        """The docker SDK client for Engine API reads and probes; pinged first (exit 3 when down).

        Like `engine()`, the project is found first (exit 4 in a wrong folder).
        """
        self.project()
        if self._docker is None:
            if self.docker_factory is not None:
                self._docker = self.docker_factory()
            else:
                from montero_ops.dockerapi import DockerAPI

                self._docker = DockerAPI()
            if check:
                self._ping(self._docker)
        return self._docker

    @staticmethod
    def _ping(api: Engine | DockerAPI) -> None:
        try:
            api.ping()
        except DockerUnavailable:
            from montero_ops.client import require_docker_cli

            require_docker_cli()  # no daemon and no docker command: say Docker is not installed
            raise


def _learn_secrets(project: Project) -> None:
    """Remember the .env's secret values so any text passed through from compose or docker
    (an "Invalid template" error quoting a value, a --verbose dump) is masked before printing."""
    from montero_ops.services import redact
    from montero_ops.services.envfile import parse_env

    try:
        redact.learn_env(parse_env(project.env_file.read_text(errors="replace")))
    except OSError:
        pass


def _log_docker_commands() -> None:
    """--verbose: python-on-whales (its logger's name is "python_on_whales.utils") and
    services/dockercmd.py log each command they run at DEBUG; show them on stderr."""
    import logging

    for name in ("python_on_whales.utils", "montero_ops.docker"):
        logger = logging.getLogger(name)
        if not logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)


def get_state(ctx: Any) -> State:
    """The State from a click/typer context, creating a default one when absent (tests)."""
    root = ctx.find_root()
    if not isinstance(root.obj, State):
        root.obj = State()
    return root.obj
