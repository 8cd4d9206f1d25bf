"""Disk usage and pruning (docker system df / system prune)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from python_on_whales import DockerClient


@dataclass
class Usage:
    kind: str
    total: int
    active: int
    size: int
    reclaimable: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def disk_usage(client: DockerClient) -> list[Usage]:
    df = client.system.disk_free()
    rows = []
    for kind, item in (("images", df.images), ("containers", df.containers), ("volumes", df.volumes),
                       ("build cache", df.build_cache)):
        rows.append(Usage(kind, int(item.total_count or 0), int(item.active or 0), int(item.size or 0),
                          int(item.reclaimable or 0)))
    return rows


def prune(client: DockerClient, all: bool = False, volumes: bool = False) -> None:
    """`docker system prune --force [--all] [--volumes]`; python-on-whales always forces, so confirm first."""
    client.system.prune(all=all, volumes=volumes)
