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
        client_v = client_v or None
    try:
        compose_v = client.compose.version().removeprefix("Docker Compose version ").strip()
    except Exception:  # noqa: BLE001
        compose_v = None
    return Versions(__version__, client_v, server_v, compose_v)
