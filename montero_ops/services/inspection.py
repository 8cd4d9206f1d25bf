"""docker inspect for the stack's containers, env secrets redacted."""

from __future__ import annotations

from typing import Any

from montero_ops.dockerapi import DockerAPI
from montero_ops.errors import StackNotRunning, UsageError
from montero_ops.services.redact import mask_strings, redact_env_list
from montero_ops.services.status import SERVICE_LABEL


def _redacted(info: dict[str, Any]) -> dict[str, Any]:
    config = dict(info.get("Config") or {})
    config["Env"] = redact_env_list(config.get("Env") or [])
    redacted: dict[str, Any] = mask_strings({**info, "Config": config})
    return redacted


def inspect(engine: DockerAPI, project: str, service: str | None, network: bool = False, env: bool = False) -> list[Any]:
    """Full inspect documents, or only their network / env part; one entry per container."""
    entries = engine.project_containers(project)
    if service:
        entries = [e for e in entries if (e.get("Labels") or {}).get(SERVICE_LABEL) == service]
        if not entries:
            known = sorted({(e.get("Labels") or {}).get(SERVICE_LABEL, "") for e in engine.project_containers(project)})
            if known:
                raise UsageError(f"no container for service '{service}' (running services: {', '.join(known)})")
            raise StackNotRunning(service)
    elif not entries:
        raise StackNotRunning()
    result: list[Any] = []
    for entry in sorted(entries, key=lambda e: (e.get("Names") or [""])[0]):
        info = _redacted(engine.inspect(entry["Id"]))
        name = info.get("Name", "").lstrip("/")
        if network:
            settings = info.get("NetworkSettings") or {}
            result.append({"Name": name, "Networks": settings.get("Networks"), "Ports": settings.get("Ports")})
        elif env:
            result.append({"Name": name, "Env": info["Config"]["Env"]})
        else:
            result.append(info)
    return result
