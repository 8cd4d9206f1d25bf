"""The stack on Docker Swarm: deploy (docker stack deploy), status, rollback.

docker/stack.yml is built for swarms without the ingress routing mesh: nginx publishes in
host mode and every service uses DNS round robin. Updates are rolling, start-first, and roll
back by themselves when a new task fails its healthcheck. `--registry` pushes the app image
first so that other nodes can pull it; a single node runs local images (no registry lookup).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops.errors import CommandFailed, UsageError
from montero_ops.project import Project, configured_app_image

if TYPE_CHECKING:
    from python_on_whales import DockerClient

STACK_FILE = Path("docker") / "stack.yml"
DEFAULT_STACK = "montero"
Progress = Callable[[str], None]


@dataclass
class ServiceState:
    name: str
    image: str
    desired: int
    running: int
    update_state: str | None = None  # updating | completed | rollback_started | rollback_completed | paused …
    update_message: str | None = None

    @property
    def converged(self) -> bool:
        return self.running == self.desired and self.update_state in (None, "completed", "rollback_completed")


@dataclass
class StackState:
    stack: str
    services: list[ServiceState] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _docker(client: DockerClient, *args: str) -> str:
    from python_on_whales.utils import run

    return str(run(client.client_config.docker_cmd + list(args)) or "")


def require_manager(client: DockerClient) -> None:
    state = _docker(client, "info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}").split()
    if not state or state[0] != "active":
        raise CommandFailed(
            "this Docker engine is not part of a swarm",
            hint="one node: `docker swarm init --advertise-addr <this host's IP>`; more: `docker swarm join …`",
        )
    if len(state) > 1 and state[1] != "true":
        raise CommandFailed("this node is a swarm worker", hint="run montero deploy on a manager node")


def registry_image(image: str, registry: str) -> str:
    """registry.example:5000 + montero-app:1.2 -> registry.example:5000/montero-app:1.2."""
    registry = registry.strip().rstrip("/")
    if not registry or " " in registry:
        raise UsageError(f"not a registry address: {registry!r}", hint="e.g. --registry registry.example.com:5000/team")
    name = image.rsplit("/", 1)[-1] if "/" in image and "." in image.split("/", 1)[0] else image
    return f"{registry}/{name}"


def stack_variables(project: Project, app_image: str | None) -> dict[str, str]:
    """MONTERO_* settings from the environment win over .env (as with compose)."""
    variables = {k: v for k, v in os.environ.items() if k.startswith("MONTERO_")}
    if app_image:
        variables["MONTERO_APP_IMAGE"] = app_image
    return variables


def deploy(
    client: DockerClient,
    project: Project,
    stack: str = DEFAULT_STACK,
    registry: str | None = None,
    image: str | None = None,
    timeout: float = 300,
    wait: bool = True,
    progress: Progress = lambda _m: None,
) -> StackState:
    stack_file = project.root / STACK_FILE
    if not stack_file.is_file():
        raise UsageError(f"{stack_file} is missing", hint="it ships with montero's docker/ folder")
    require_manager(client)
    app_image = image or configured_app_image(project)
    if registry:
        source = app_image
        target = registry_image(source, registry)
        progress(f"pushing {source} as {target}")
        client.image.tag(source, target)
        client.image.push(target, quiet=True)
        app_image = target
    env_files: list[str | Path] = [project.env_file] if project.env_file.is_file() else []
    progress(f"deploying stack {stack} from {STACK_FILE}")
    client.stack.deploy(stack, compose_files=[stack_file], env_files=env_files,
                        variables=stack_variables(project, app_image),
                        resolve_image="always" if registry else "never", prune=True)
    return wait_converged(client, stack, timeout, progress) if wait else status(client, stack)


def status(client: DockerClient, stack: str) -> StackState:
    ids = _docker(client, "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").split()
    if not ids:
        raise CommandFailed(f"no stack named {stack!r} on this swarm", hint="run `montero swarm deploy` first")
    specs = json.loads(_docker(client, "service", "inspect", *ids))
    counts = {}
    for line in _docker(client, "service", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                        "--format", "{{.Name}} {{.Replicas}}").splitlines():
        sid, _, replicas = line.partition(" ")
        counts[sid] = replicas
    result = StackState(stack)
    for spec in sorted(specs, key=lambda s: s["Spec"]["Name"]):
        running, _, desired = counts.get(spec["Spec"]["Name"], "0/0").partition("/")
        update = spec.get("UpdateStatus") or {}
        image = spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@", 1)[0]
        result.services.append(ServiceState(
            name=spec["Spec"]["Name"], image=image, desired=int(desired.split()[0] or 0), running=int(running or 0),
            update_state=update.get("State"), update_message=update.get("Message"),
        ))
    return result


def wait_converged(client: DockerClient, stack: str, timeout: float, progress: Progress = lambda _m: None,
                   poll: float = 2.0) -> StackState:
    """Until every service runs its desired replicas (swarm counts a task only once it is healthy)."""
    deadline = time.monotonic() + timeout
    state = status(client, stack)
    while time.monotonic() < deadline:
        state = status(client, stack)
        bad = [s for s in state.services if s.update_state in ("paused", "rollback_paused")]
        if bad:
            raise CommandFailed(f"{bad[0].name}: update {bad[0].update_state}: {bad[0].update_message}",
                                hint="`montero swarm status`; `docker service ps --no-trunc " + bad[0].name + "`")
        if all(s.converged for s in state.services):
            return state
        time.sleep(poll)
    waiting = ", ".join(f"{s.name} {s.running}/{s.desired} {s.update_state or ''}".strip()
                        for s in state.services if not s.converged)
    raise CommandFailed(f"stack {stack} not converged after {timeout:g}s: {waiting}",
                        hint=f"`docker service ps --no-trunc {stack}_app` shows why tasks fail")


def rollback(client: DockerClient, stack: str, service: str = "app", timeout: float = 300,
             progress: Progress = lambda _m: None) -> StackState:
    """Back to the service's previous spec (image included), start-first like an update."""
    full = f"{stack}_{service}"
    status(client, stack)  # a clear error when the stack is missing
    progress(f"rolling {full} back to its previous version")
    _docker(client, "service", "rollback", "--detach", full)
    return wait_converged(client, stack, timeout, progress)


def remove(client: DockerClient, stack: str) -> None:
    client.stack.remove(stack)
