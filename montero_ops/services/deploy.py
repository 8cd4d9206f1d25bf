"""The stack on Docker Swarm: deploy (docker stack deploy), status, rollback.

docker/stack.yml is built for swarms without the ingress routing mesh: nginx publishes in
host mode and every service uses DNS round robin. Updates are rolling, start-first, and roll
back by themselves when a new task fails its healthcheck. `--registry` pushes the app image
first so that other nodes can pull it; a single node runs local images (no registry lookup).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops.errors import CommandFailed, UsageError
from montero_ops.project import Project, configured_app_image
from montero_ops.services import swarm, swarm_objects
from montero_ops.services.swarm import Placement
from montero_ops.services.wait import wait_until

if TYPE_CHECKING:
    from python_on_whales import DockerClient

STACK_FILE = Path("docker") / "stack.yml"
POSTGRES_STACK_FILE = Path("docker") / "stack.postgres.yml"
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
    tasks_per_node: dict[str, int] = field(default_factory=dict)  # node name -> running tasks

    @property
    def converged(self) -> bool:
        return self.running == self.desired and self.update_state in (None, "completed", "rollback_completed")


@dataclass
class NodeState:
    name: str
    id: str
    role: str
    state: str
    availability: str
    leader: bool
    tasks: int  # running tasks of this stack


@dataclass
class StackState:
    stack: str
    services: list[ServiceState] = field(default_factory=list)
    nodes: list[NodeState] = field(default_factory=list)
    placement: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _docker(client: DockerClient, *args: str) -> str:
    from montero_ops.services import dockercmd

    return dockercmd.docker(client, *args)


def require_manager(client: DockerClient) -> None:
    engine = swarm.engine_swarm(client)
    if engine.state != "active":
        raise CommandFailed(
            "this Docker engine is not part of a swarm",
            hint="one node: `docker swarm init --advertise-addr <this host's IP>`; more: `docker swarm join …`",
        )
    if not engine.manager:
        raise CommandFailed("this node is a swarm worker",
                            hint="point montero at a manager: DOCKER_HOST=ssh://manager or --context NAME")


def registry_image(image: str, registry: str) -> str:
    """registry.example:5000 + montero-app:1.2 -> registry.example:5000/montero-app:1.2."""
    registry = registry.strip().rstrip("/")
    if not registry or " " in registry:
        raise UsageError(f"not a registry address: {registry!r}", hint="e.g. --registry registry.example.com:5000/team")
    name = image.rsplit("/", 1)[-1] if has_registry_host(image) else image
    return f"{registry}/{name}"


def has_registry_host(image: str) -> bool:
    """reg.example:5000/x, localhost/x: pullable by name from any node; montero-app:1 is not."""
    first, slash, _ = image.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def stack_variables(project: Project, app_image: str | None) -> dict[str, str]:
    """MONTERO_* settings from the environment win over .env (as with compose)."""
    variables = {k: v for k, v in os.environ.items() if k.startswith("MONTERO_")}
    if app_image:
        variables["MONTERO_APP_IMAGE"] = app_image
    return variables


def push_by_digest(client: DockerClient, source: str, registry: str, progress: Progress) -> str:
    """Push SOURCE to REGISTRY; the reference to deploy is REGISTRY/name:tag@sha256:… (the
    digest the registry returned), so every node runs exactly the bytes pushed, whatever
    happens to the tag later."""
    target = registry_image(source, registry)
    progress(f"pushing {source} as {target}")
    _docker(client, "image", "tag", source, target)
    _docker(client, "image", "push", "--quiet", target)
    repo = target.rsplit(":", 1)[0] if ":" in target.rsplit("/", 1)[-1] else target
    digests = json.loads(_docker(client, "image", "inspect", "--format", "{{json .RepoDigests}}", target) or "[]")
    digest = next((d.split("@", 1)[1] for d in digests or [] if d.split("@", 1)[0] == repo), None)
    if digest is None:
        raise CommandFailed(f"{target} was pushed but the engine recorded no digest for {repo}",
                            hint=f"check the registry: `docker push {target}`")
    progress(f"deploying {target}@{digest}")
    return f"{target}@{digest}"


def tls_secrets(project: Project, stack: str) -> dict[str, Path] | None:
    """The certificate pair nginx serves, as swarm secrets (never in an image or an env var).

    Secrets cannot change, so their names carry a hash of the content: a renewed
    certificate becomes new secrets and a rolling update of nginx.
    """
    from montero_ops.services.tls import certs_dir

    folder = certs_dir(project)
    pair = {"fullchain": folder / "fullchain.pem", "privkey": folder / "privkey.pem"}
    if not all(p.is_file() and p.stat().st_size for p in pair.values()):
        return None
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in pair.values())).hexdigest()[:12]
    return {f"{stack}_tls_{role}_{digest}": path.resolve() for role, path in pair.items()}


def override_file(placement: Placement, secrets: dict[str, Path] | None, multi: bool) -> dict[str, Any]:
    """The compose layer montero adds to docker/stack.yml: placement by label, TLS secrets."""
    services: dict[str, Any] = {}
    for service, constraints in placement.constraints.items():
        services.setdefault(service, {}).setdefault("deploy", {})["placement"] = {"constraints": constraints}
    if multi:
        nginx = services.setdefault("nginx", {}).setdefault("deploy", {})
        nginx["replicas"] = placement.edge_nodes
        nginx.setdefault("placement", {})["max_replicas_per_node"] = 1
    layer: dict[str, Any] = {"version": "3.8", "services": services}
    if secrets:
        refs = []
        for name in secrets:
            role = "fullchain" if "_tls_fullchain_" in name else "privkey"
            refs.append({"source": name, "target": f"/etc/nginx/certs/{role}.pem", "mode": 0o444 if role ==
                         "fullchain" else 0o400})
        services.setdefault("nginx", {})["secrets"] = refs
        layer["secrets"] = {name: {"name": name, "file": str(path)} for name, path in secrets.items()}
    return layer


def deploy(
    client: DockerClient,
    project: Project,
    stack: str = DEFAULT_STACK,
    registry: str | None = None,
    image: str | None = None,
    timeout: float = 300,
    wait: bool = True,
    progress: Progress = lambda _m: None,
    postgres: bool = False,
) -> StackState:
    stack_file = project.root / STACK_FILE
    if not stack_file.is_file():
        raise UsageError(f"{stack_file} is missing", hint="it ships with montero's docker/ folder")
    files = [stack_file]
    if postgres:
        files.append(project.root / POSTGRES_STACK_FILE)
        if not files[-1].is_file():
            raise UsageError(f"{files[-1]} is missing", hint="it ships with montero's docker/ folder")
    require_manager(client)
    # Every refusal comes before anything changes (no push, no deploy).
    all_nodes = swarm.nodes(client)
    multi = len(all_nodes) > 1
    app_image = image or configured_app_image(project)
    source = app_image
    if multi and not registry and not has_registry_host(source):
        raise UsageError(
            f"this swarm has {len(all_nodes)} nodes and {source} is a local image: the other nodes cannot pull it",
            hint="pass --registry HOST:PORT (a registry every node can pull from; montero pushes the image "
                 "there and deploys it by digest); a one-node swarm works without one",
        )
    placement = swarm.plan_placement(all_nodes, postgres)
    for note in placement.notes:
        progress(note)
    objects = swarm_objects.plan(project, stack, files)  # refuses a missing or weak SECRET_KEY here
    before = _update_marks(client, stack)
    if registry:
        app_image = push_by_digest(client, source, registry, progress)
    secrets = tls_secrets(project, stack)
    if secrets:
        progress(f"TLS: the certificate pair as swarm secrets {', '.join(secrets)}")
    progress(f"settings as swarm secrets: {', '.join(sorted(objects.roles.values()))} (files under /run/secrets)")
    env_files: list[str | Path] = [project.env_file] if project.env_file.is_file() else []
    progress(f"deploying stack {stack} from {', '.join(str(f.relative_to(project.root)) for f in files)}")
    with tempfile.TemporaryDirectory(prefix="montero-stack-") as tmp:
        layer = Path(tmp) / "placement.yml"
        secret_files = swarm_objects.write_secret_files(objects, Path(tmp))
        content = swarm_objects.add_to_layer(override_file(placement, secrets, multi), objects, secret_files)
        content["version"] = swarm_objects.compose_version(stack_file)  # docker refuses mixed versions
        layer.write_text(json.dumps(content, indent=2))
        client.stack.deploy(stack, compose_files=[*files, layer], env_files=env_files,
                            variables=stack_variables(project, app_image),
                            resolve_image="always" if (registry or multi) else "never", prune=True)
    if not wait:
        swarm_objects.prune(client, stack, _inspect_services(client, stack), progress)
        return status(client, stack)
    state = wait_converged(client, stack, timeout, progress, since=before)
    swarm_objects.prune(client, stack, _inspect_services(client, stack), progress)
    state.placement = placement.notes
    return state


def _inspect_services(client: DockerClient, stack: str) -> list[dict[str, Any]]:
    ids = _docker(client, "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").split()
    if not ids:
        return []
    return sorted(json.loads(_docker(client, "service", "inspect", *ids)), key=lambda s: s["Spec"]["Name"])


def _update_marks(client: DockerClient, stack: str) -> dict[str, str]:
    """service -> when its last update started ("" for none): what a new update is told apart by."""
    return {s["Spec"]["Name"]: (s.get("UpdateStatus") or {}).get("StartedAt", "")
            for s in _inspect_services(client, stack)}


def _desired(spec: dict[str, Any], all_tasks: list[swarm.Task], nodes: dict[str, str]) -> int:
    """Replicas for a replicated service; for a global one, as `docker service ls` counts
    it: the known nodes given a task that should run."""
    replicated = (spec["Spec"].get("Mode") or {}).get("Replicated")
    if replicated is not None:
        return int(replicated.get("Replicas", 0))
    name = spec["Spec"]["Name"]
    return len({t.node_id for t in all_tasks if t.service == name and t.desired == "running" and t.node_id in nodes})


def status(client: DockerClient, stack: str, specs: list[dict[str, Any]] | None = None,
           all_tasks: list[swarm.Task] | None = None) -> StackState:
    specs = _inspect_services(client, stack) if specs is None else specs
    if not specs:
        raise CommandFailed(f"no stack named {stack!r} on this swarm", hint="run `montero swarm deploy` first")
    if all_tasks is None:
        all_tasks = swarm.tasks(client, stack, {s["ID"]: s["Spec"]["Name"] for s in specs})
    all_nodes = swarm.nodes(client)
    names = {n.id: n.name for n in all_nodes}
    live = [t for t in all_tasks if t.state == "running" and t.desired == "running"]
    result = StackState(stack)
    for spec in specs:
        name = spec["Spec"]["Name"]
        update = spec.get("UpdateStatus") or {}
        image = swarm.image_without_digest(spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])
        per_node: dict[str, int] = {}
        for t in live:
            if t.service == name:
                node = names.get(t.node_id, t.node_id[:12])
                per_node[node] = per_node.get(node, 0) + 1
        result.services.append(ServiceState(
            name=name, image=image, desired=_desired(spec, all_tasks, names), running=sum(per_node.values()),
            update_state=update.get("State"), update_message=update.get("Message"),
            tasks_per_node=dict(sorted(per_node.items())),
        ))
    for n in all_nodes:
        result.nodes.append(NodeState(name=n.name, id=n.id, role=n.role, state=n.state, availability=n.availability,
                                      leader=n.leader, tasks=sum(1 for t in live if t.node_id == n.id)))
    return result


def wait_converged(client: DockerClient, stack: str, timeout: float, progress: Progress = lambda _m: None,
                   poll: float = 2.0, since: dict[str, str] | None = None,
                   check: Callable[[], None] | None = None) -> StackState:
    """Until every service runs its desired replicas on its current spec (swarm counts a task
    only once it is healthy). With SINCE (the update marks taken before a deploy), an update
    that the swarm rolled back is a failure, reported with the failing task's error and logs.
    CHECK runs at every poll and may raise to stop waiting (a release's probe stream).
    """
    waiting: list[str] = []

    def converged() -> StackState | None:
        if check:
            check()
        specs = _inspect_services(client, stack)
        all_tasks = swarm.tasks(client, stack, {s["ID"]: s["Spec"]["Name"] for s in specs})
        state = status(client, stack, specs, all_tasks)
        waiting.clear()
        for spec, svc in zip(specs, state.services, strict=True):
            update = spec.get("UpdateStatus") or {}
            started = update.get("StartedAt", "")
            fresh = since is None or (bool(started) and started != since.get(svc.name, ""))
            current = svc.update_state if fresh else None
            if current in ("paused", "rollback_paused") or (since is not None and current == "rollback_completed"):
                _explain(client, svc, all_tasks, started, progress)
            on_spec = swarm.running_on_spec(spec, all_tasks)
            if current in ("updating", "rollback_started") or on_spec < svc.desired:
                waiting.append(f"{svc.name} {on_spec}/{svc.desired} {current or ''}".strip())
        return None if waiting else state

    done = wait_until(converged, timeout, poll)
    if done is None:
        raise CommandFailed(f"stack {stack} not converged after {timeout:g}s: {', '.join(waiting)}",
                            hint=f"`montero doctor --swarm --stack {stack}` names the failing tasks")
    return done


def _explain(client: DockerClient, svc: ServiceState, all_tasks: list[swarm.Task], since: str,
             progress: Progress) -> None:
    for line in swarm.failure_reason(client, svc.name, all_tasks, since):
        progress(line)
    what = "rolled back to the previous version" if svc.update_state == "rollback_completed" else svc.update_state
    raise CommandFailed(f"{svc.name}: the update failed and was {what}: {svc.update_message}",
                        hint=f"the failing task's error and last log lines are above; "
                             f"`docker service ps --no-trunc {svc.name}`")


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
