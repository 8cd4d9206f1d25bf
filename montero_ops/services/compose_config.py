"""The resolved compose configuration, with every secret redacted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from montero_ops.services.dockercmd import compose_cmd, run_capture
from montero_ops.services.redact import redact_compose_config, redact_text

if TYPE_CHECKING:
    from python_on_whales import DockerClient


def config_json(client: DockerClient) -> dict[str, Any]:
    raw: dict[str, Any] = client.compose.config(return_json=True)
    result: dict[str, Any] = redact_compose_config(raw)
    return result


def config_text(client: DockerClient) -> str:
    """Compose's own YAML (what users know from `docker compose config`), redacted line by line."""
    text = run_capture(compose_cmd(client) + ["config"])
    return redact_text(text if text.endswith("\n") else text + "\n")
