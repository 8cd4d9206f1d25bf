"""What the root options decide, shared by every command through `ctx.obj`.

The project and the DockerClient are built lazily, once, the first time a command
asks for them, so commands that need neither (help, version, env) stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from montero_ops.errors import DockerUnavailable
from montero_ops.project import Project, find_project

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from montero_ops.engine import Engine


@dataclass
class State:
    project_dir: str | None = None
    env_file: str | None = None
    project_name: str | None = None
    debug: bool = False
    verbose: bool = False
    _project: Project | None = field(default=None, repr=False)
    _clients: dict[Any, DockerClient] = field(default_factory=dict, repr=False)

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
            client = build_client(project)
            if check:
                require_engine(client)
            self._clients[project] = client
        return self._clients[project]


    def engine(self, check: bool = True) -> Engine:
        """The direct Engine API client (fast read-only queries); pinged first (exit 3 when down).

        Every caller works on the project, so the project is found first: "no project here"
        (exit 4) is the answer in a wrong folder whether or not Docker runs, not exit 3.
        """
        # Looked up on the module at call time so tests can swap the class.
        from montero_ops import engine as engine_module

        self.project()
        eng = engine_module.Engine()
        if check:
            try:
                eng.ping()
            except DockerUnavailable:
                from montero_ops.client import require_docker_cli

                require_docker_cli()  # no daemon and no docker command: say Docker is not installed
                raise
        return eng


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
    """--verbose: python-on-whales logs each command it runs at DEBUG; show them on stderr."""
    import logging

    logger = logging.getLogger("python_on_whales.utils")
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
