"""The resolved compose configuration, with every secret redacted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from montero_ops.services.redact import redact_compose_config, to_yaml

if TYPE_CHECKING:
    from python_on_whales import DockerClient


def config_json(client: DockerClient) -> dict[str, Any]:
    raw: dict[str, Any] = client.compose.config(return_json=True)
    result: dict[str, Any] = redact_compose_config(raw)
    return result


def config_text(client: DockerClient) -> str:
    """YAML like `docker compose config`, rendered from the redacted structure.

    Masking compose's own text line by line missed multi-line values (a PEM key in a block
    scalar printed every line after the header), so the text comes from the parsed document.
    """
    return to_yaml(config_json(client))
