"""Versions of montero, the Docker client and server, and Compose."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from montero_ops import __version__

if TYPE_CHECKING:
    from python_on_whales import DockerClient


@dataclass
class Versions:
    montero: str
    docker_client: str | None
    docker_server: str | None
    compose: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def versions(client: DockerClient) -> Versions:
    """Ask docker for each version; a missing part is None rather than an error."""
    client_v = server_v = compose_v = None
    # Any failure (no binary: ClientNotFoundError is a plain Exception; no daemon:
    # DockerException) just leaves that part unknown.
    try:
        info = client.version()
        client_v = info.client.version if info.client else None
        server_v = info.server.version if info.server else None
    except Exception:  # noqa: BLE001
        # `docker version` fails as a whole when only the daemon is unreachable; the client
        # still knows its own version.
        client_v = _client_only(client)
    try:
        compose_v = client.compose.version().removeprefix("Docker Compose version ").strip()
    except Exception:  # noqa: BLE001
        compose_v = None
    return Versions(__version__, client_v, server_v, compose_v)


def _client_only(client: DockerClient) -> str | None:
    import shutil
    import subprocess

    from montero_ops.client import built_from

    call = built_from(client).client_call
    if not shutil.which(call[0]):
        return None
    try:
        proc = subprocess.run([*call, "version", "--format", "{{.Client.Version}}"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (proc.stdout or "").strip().splitlines()
    return first[0].strip() if first and first[0].strip() else None
