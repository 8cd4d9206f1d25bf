"""Container state, health and restart counts straight from the Engine API.

No python-on-whales here: `ps` and `health` must answer faster than `docker compose ps`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from montero_ops.engine import ContainerReader
from montero_ops.errors import StackNotRunning
from montero_ops.project import Project

SERVICE_LABEL = "com.docker.compose.service"
OK_HEALTH = ("healthy", "running")


@dataclass
class ContainerStatus:
    service: str
    name: str
    id: str
    state: str  # running, exited, restarting, created, paused, dead
    health: str | None  # healthy, unhealthy, starting; None without a healthcheck
    restarts: int
    exit_code: int | None
    image: str
    ports: list[str] = field(default_factory=list)
    status: str = ""

    @property
    def condition(self) -> str:
        """One word for health: the healthcheck's verdict, else the container state."""
        if self.state == "running":
            return self.health or "running"
        return self.state

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "condition": self.condition}


@dataclass
class ServiceHealth:
    service: str
    status: str  # healthy, running (no healthcheck), starting, unhealthy, exited, missing …
    containers: int

    @property
    def ok(self) -> bool:
        return self.status in OK_HEALTH

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def _ports(entries: list[dict[str, Any]] | None) -> list[str]:
    seen: list[str] = []
    ipv4 = {(p.get("PublicPort"), p.get("PrivatePort")) for p in entries or [] if ":" not in p.get("IP", "")}
    for p in entries or []:
        if ":" in p.get("IP", "") and (p.get("PublicPort"), p.get("PrivatePort")) in ipv4:
            continue  # the same binding on IPv6: one line is enough
        if p.get("PublicPort"):
            ip = p.get("IP", "0.0.0.0")
            text = f"{'[::]' if ':' in ip else ip}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}"
        else:
            text = f"{p['PrivatePort']}/{p.get('Type', 'tcp')}"
        if text not in seen:
            seen.append(text)
    return seen


def container_statuses(engine: ContainerReader, project: str) -> list[ContainerStatus]:
    """Every container of the compose project, with health and restart count (one inspect each)."""
    entries = engine.project_containers(project)
    # Health and restart count need one inspect per container: ask in parallel (scaled apps).
    if len(entries) > 2:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(8, len(entries))) as pool:
            infos = list(pool.map(lambda e: engine.inspect(e["Id"]), entries))
    else:
        infos = [engine.inspect(e["Id"]) for e in entries]
    result = []
    for entry, info in zip(entries, infos):
        state = info.get("State") or {}
        health = (state.get("Health") or {}).get("Status")
        status = state.get("Status", entry.get("State", ""))
        result.append(
            ContainerStatus(
                service=(entry.get("Labels") or {}).get(SERVICE_LABEL, ""),
                name=(entry.get("Names") or ["?"])[0].lstrip("/"),
                id=entry["Id"][:12],
                state=status,
                health=health,
                restarts=int(info.get("RestartCount", 0)),
                exit_code=state.get("ExitCode") if status in ("exited", "dead") else None,
                image=entry.get("Image", ""),
                ports=_ports(entry.get("Ports")),
                status=entry.get("Status", ""),
            )
        )
    return sorted(result, key=lambda c: (c.service, c.name))


def health_log(engine: ContainerReader, container_id: str) -> list[dict[str, Any]]:
    """The last health-probe results (docker inspect State.Health.Log)."""
    info = engine.inspect(container_id)
    log: list[dict[str, Any]] = ((info.get("State") or {}).get("Health") or {}).get("Log") or []
    return log


def defined_services(project: Project) -> list[str]:
    """Services compose would start with the active profiles (`docker compose config --services`)."""
    return start_defined_services(project)()


def start_defined_services(project: Project) -> Callable[[], list[str]]:
    """Start `docker compose config --services` now and return a function that collects it.

    Compose takes 0.1-0.3 s to answer, more than the rest of `montero health` together
    (bench figure 3), and its answer only changes when the compose files, the env file,
    the profiles or COMPOSE_* variables do: it is cached under those (services_cache_key).
    On a cache miss compose runs while the engine answers, instead of before.
    """
    import json
    import os

    from montero_ops.client import compose_base_cmd

    key = services_cache_key(project)
    cache = _services_cache_file(project)
    try:
        stored = json.loads(cache.read_text())
        if stored.get("key") == key and isinstance(stored.get("services"), list):
            cached = [str(s) for s in stored["services"]]
            return lambda: cached
    except (OSError, ValueError, AttributeError):
        pass

    proc = subprocess.Popen(
        compose_base_cmd(project) + ["config", "--services"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )

    def collect() -> list[str]:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            return []  # an invalid compose file is reported by the commands that need it
        services = [line.strip() for line in out.splitlines() if line.strip()]
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_name(f".{cache.name}.{os.getpid()}")
            tmp.write_text(json.dumps({"key": key, "services": services}))
            tmp.replace(cache)
        except OSError:
            pass  # a read-only home only costs the next call its compose run
        return services

    return collect


def services_cache_key(project: Project) -> list[Any]:
    """Everything `docker compose config --services` depends on: the files' identity
    (path, size, mtime) including every YAML file next to the compose files (includes,
    extends), the env file, the profiles, the project name and COMPOSE_* variables."""
    import os

    files: set[Path] = {project.env_file}
    for compose_file in project.compose_files:
        files.add(compose_file)
        try:
            files.update(p for p in compose_file.parent.iterdir() if p.suffix in (".yml", ".yaml"))
        except OSError:
            pass
    stats: list[Any] = []
    for path in sorted(files):
        try:
            st = path.stat()
            stats.append([str(path), st.st_size, st.st_mtime_ns])
        except OSError:
            stats.append([str(path), None, None])
    compose_env = sorted([k, v] for k, v in os.environ.items() if k.startswith("COMPOSE_"))
    return [str(project.root), project.name, [str(f) for f in project.compose_files], list(project.profiles),
            stats, compose_env]


def _services_cache_file(project: Project) -> Path:
    import os
    import re

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "montero"
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", str(project.root)).strip("_")[-80:]
    return base / f"services-{project.name}-{slug}.json"


_RANK = {"healthy": 0, "running": 1, "starting": 2, "created": 3, "restarting": 4, "paused": 5,
         "unhealthy": 6, "exited": 7, "dead": 8}


def services_health(containers: list[ContainerStatus], expected: list[str]) -> list[ServiceHealth]:
    """One verdict per service: its worst container; a service without containers is `missing`."""
    by_service: dict[str, list[ContainerStatus]] = {name: [] for name in expected}
    for c in containers:
        by_service.setdefault(c.service, []).append(c)
    result = []
    for service, items in sorted(by_service.items()):
        if not items:
            result.append(ServiceHealth(service, "missing", 0))
            continue
        worst = max((c.condition for c in items), key=lambda s: _RANK.get(s, 9))
        result.append(ServiceHealth(service, worst, len(items)))
    return result


def require_running(engine: ContainerReader, project: str, service: str) -> str:
    """The name of a running container of the service, or StackNotRunning ("run `montero up` first")."""
    for entry in engine.project_containers(project):  # the list form says enough: no inspect
        if (entry.get("Labels") or {}).get(SERVICE_LABEL) == service and entry.get("State") == "running":
            return str((entry.get("Names") or ["?"])[0]).lstrip("/")
    raise StackNotRunning(service)
