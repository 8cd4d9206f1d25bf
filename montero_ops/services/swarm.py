"""What a swarm is made of, as its manager sees it: nodes, tasks, placement, failure reasons.

State (nodes, services, tasks) comes from python-on-whales' typed models through the
project's DockerClient (`client.node.list()`, `client.service.list()`, `client.service.ps()`);
task logs and a container's health log go through its docker CLI. Either way DOCKER_HOST
and --context decide which manager answers: nothing here assumes the manager is the local
daemon.

Placement labels (docs/production.md, "Several hosts"), set with
`docker node update --label-add KEY=true NODE`:
  montero.edge=true      nodes that run nginx (HTTPS, host-mode ports 80/443), one nginx each
  montero.redis=true     the one node that runs Redis (its volume lives there)
  montero.postgres=true  the one node that runs PostgreSQL (its volume lives there)
  montero.sqlite=true    with SQLite on several nodes: the one node the app is pinned to
On a one-node swarm no label is needed.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from montero_ops.errors import UsageError

if TYPE_CHECKING:
    from python_on_whales import DockerClient
    from python_on_whales import Node as NodeModel
    from python_on_whales import Task as TaskModel

EDGE, REDIS, POSTGRES, SQLITE = "montero.edge", "montero.redis", "montero.postgres", "montero.sqlite"
NAME_LABEL = "montero.node"  # optional: a readable node name (all nodes may share a hostname)
FAILED_STATES = {"failed", "rejected"}


def docker(client: DockerClient, *args: str) -> str:
    from montero_ops.services import dockercmd

    return dockercmd.docker(client, *args)


@dataclass
class Node:
    id: str
    name: str  # the montero.node label, else the hostname
    role: str  # manager | worker
    state: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    leader: bool = False
    address: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.availability == "active"

    def has(self, label: str) -> bool:
        return self.labels.get(label, "").lower() in ("true", "1", "yes")


@dataclass
class Task:
    id: str
    service: str
    node_id: str
    slot: int | None
    state: str  # new | pending | assigned | … | running | complete | failed | shutdown | rejected
    desired: str  # running | shutdown | ready
    error: str = ""
    message: str = ""
    image: str = ""
    timestamp: str = ""
    spec: dict[str, Any] = field(default_factory=dict, repr=False)
    container: str = ""  # the task's container id, on its node


def node_from_inspect(raw: dict[str, Any]) -> Node:
    spec, desc, status = raw.get("Spec", {}), raw.get("Description", {}), raw.get("Status", {})
    labels = dict(spec.get("Labels") or {})
    return Node(
        id=raw["ID"], name=labels.get(NAME_LABEL) or desc.get("Hostname", raw["ID"][:12]),
        role=spec.get("Role", "?"), state=status.get("State", "unknown"),
        availability=spec.get("Availability", "?"),
        leader=bool((raw.get("ManagerStatus") or {}).get("Leader")),
        address=status.get("Addr", ""), labels=labels,
    )


def node_from_model(found: NodeModel) -> Node:
    """A python-on-whales Node (`client.node.list()`), read once: its fields are read together,
    so they come from one `docker node inspect` (python-on-whales caches an inspect for 10 ms)."""
    spec, desc, status, manager = found.spec, found.description, found.status, found.manager_status
    labels = dict(spec.labels or {}) if spec else {}
    node_id = str(found.id)
    return Node(
        id=node_id, name=labels.get(NAME_LABEL) or (desc.hostname if desc and desc.hostname else node_id[:12]),
        role=(spec.role if spec else None) or "?", state=(status.state if status else None) or "unknown",
        availability=(spec.availability if spec else None) or "?",
        leader=bool(manager and manager.leader), address=(status.addr if status else None) or "", labels=labels,
    )


def nodes(client: DockerClient) -> list[Node]:
    """The swarm's nodes, from python-on-whales' typed models (`client.node.list()`)."""
    return sorted((node_from_model(n) for n in client.node.list()), key=lambda n: (n.name, n.id))


def task_from_inspect(raw: dict[str, Any], service_names: dict[str, str]) -> Task:
    status = raw.get("Status", {})
    container = (raw.get("Spec") or {}).get("ContainerSpec") or {}
    return Task(
        id=raw["ID"], service=service_names.get(raw.get("ServiceID", ""), raw.get("ServiceID", "")),
        node_id=raw.get("NodeID", ""), slot=raw.get("Slot"), state=status.get("State", "?"),
        desired=raw.get("DesiredState", "?"), error=status.get("Err", ""), message=status.get("Message", ""),
        image=container.get("Image", ""), timestamp=status.get("Timestamp", ""), spec=raw.get("Spec") or {},
        container=(status.get("ContainerStatus") or {}).get("ContainerID", ""),
    )


def _timestamp(when: datetime | None) -> str:
    """Docker's RFC 3339 UTC form (microseconds), comparable as text with UpdateStatus.StartedAt."""
    if when is None:
        return ""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def task_from_model(found: TaskModel, service_names: dict[str, str]) -> Task:
    """A python-on-whales Task (`client.service.ps()`), its fields read together (one inspect)."""
    spec, status, service_id = found.spec, found.status, found.service_id or ""
    node_id, slot, desired = found.node_id, found.slot, found.desired_state
    raw_spec = spec.model_dump(by_alias=True, exclude_none=True) if spec is not None else {}
    container = (raw_spec.get("ContainerSpec") or {})
    running = status.container_status if status else None
    return Task(
        id=str(found.id), service=service_names.get(service_id, service_id), node_id=node_id or "", slot=slot,
        state=(status.state if status else None) or "?", desired=desired or "?",
        error=(status.err if status else None) or "", message=(status.message if status else None) or "",
        image=container.get("Image", ""), timestamp=_timestamp(status.timestamp if status else None),
        spec=raw_spec, container=(running.container_id if running else None) or "",
    )


def tasks(client: DockerClient, stack: str, services: dict[str, str] | None = None) -> list[Task]:
    """Every task the manager keeps for the stack (history included), newest first.

    From python-on-whales' typed models: `client.service.ps(the stack's services)`, which is
    what `docker stack ps` lists (the tasks of the services in the stack's namespace)."""
    if services is None:
        services = service_names(client, stack)
    if not services:
        return []
    found = [task_from_model(t, services) for t in client.service.ps(list(services))]
    return sorted(found, key=lambda t: t.timestamp, reverse=True)


def service_names(client: DockerClient, stack: str) -> dict[str, str]:
    """service id -> name, the services labelled with the stack's namespace (`client.service.list`)."""
    listed = client.service.list(filters=[("label", f"com.docker.stack.namespace={stack}")])
    return {str(s.id): s.spec.name for s in listed if s.spec and s.spec.name}


@dataclass(frozen=True)
class EngineSwarm:
    """This engine's place in a swarm, from `client.system.info().swarm` (a typed model)."""

    state: str  # inactive | pending | active | error | locked ("" when the engine does not say)
    manager: bool  # ControlAvailable: a manager that can answer swarm queries
    node_id: str


def engine_swarm(client: DockerClient) -> EngineSwarm:
    found = client.system.info().swarm
    if found is None:
        return EngineSwarm("", False, "")
    return EngineSwarm(found.local_node_state or "", bool(found.control_available), found.node_id or "")


def stack_service_names(client: DockerClient, stack: str) -> list[str]:
    """Names of the services labelled with the stack's namespace (`client.service.list`)."""
    return sorted(service_names(client, stack).values())


def image_without_digest(image: str) -> str:
    return image.split("@", 1)[0]


# --- placement ---------------------------------------------------------------------------

@dataclass
class Placement:
    """Constraints per service (empty: anywhere) and what montero tells the user about them."""

    constraints: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    edge_nodes: int = 1


def _one(found: Sequence[Node], label: str, what: str) -> Node:
    if len(found) == 1:
        return found[0]
    names = ", ".join(n.name for n in found)
    if not found:
        raise UsageError(
            f"no node is labelled {label}=true: on several nodes {what} must stay on one node, "
            "where its volume is",
            hint=f"label the node that keeps its data: `docker node update --label-add {label}=true NODE`",
        )
    raise UsageError(f"{len(found)} nodes are labelled {label}=true ({names}): {what} needs exactly one",
                     hint=f"`docker node update --label-rm {label} NODE` on all but one")


def plan_placement(all_nodes: Sequence[Node], postgres: bool) -> Placement:
    """Where each service may run. One node: anywhere. Several: by the montero.* labels.

    SQLite is one file on one node's volume: replicas on two nodes would each write their own
    database and users would see different data depending on the replica. So on several
    nodes the app either uses PostgreSQL (and spreads) or is pinned to the montero.sqlite node.
    """
    placement = Placement()
    if len(all_nodes) <= 1:
        return placement
    by = {label: [n for n in all_nodes if n.has(label)] for label in (EDGE, REDIS, POSTGRES, SQLITE)}
    redis = _one(by[REDIS], REDIS, "Redis")
    placement.constraints["redis"] = [f"node.labels.{REDIS}==true"]
    placement.notes.append(f"redis on {redis.name} ({REDIS}=true)")
    if not by[EDGE]:
        raise UsageError(
            f"no node is labelled {EDGE}=true: nginx publishes 80/443 in host mode on the edge node(s)",
            hint=f"label the node(s) your DNS points at: `docker node update --label-add {EDGE}=true NODE`",
        )
    placement.constraints["nginx"] = [f"node.labels.{EDGE}==true"]
    placement.edge_nodes = len(by[EDGE])
    placement.notes.append(f"nginx on {', '.join(n.name for n in by[EDGE])} ({EDGE}=true, host-mode ports)")
    if postgres:
        pg = _one(by[POSTGRES], POSTGRES, "PostgreSQL")
        placement.constraints["postgres"] = [f"node.labels.{POSTGRES}==true"]
        placement.notes.append(f"postgres on {pg.name} ({POSTGRES}=true); the app spreads over every node")
        return placement
    if not by[SQLITE]:
        raise UsageError(
            f"this swarm has {len(all_nodes)} nodes and the app uses SQLite: replicas on different nodes "
            "would each write their own database file",
            hint=f"spread the app with PostgreSQL (`--profile postgres`), or pin it to one node: "
                 f"`docker node update --label-add {SQLITE}=true NODE`",
        )
    pinned = _one(by[SQLITE], SQLITE, "the SQLite app")
    placement.constraints["app"] = [f"node.labels.{SQLITE}==true"]
    placement.notes.append(f"app pinned to {pinned.name} ({SQLITE}=true): SQLite is one file on one node")
    return placement


# --- convergence and failure reasons ------------------------------------------------------

_SPEC_KEYS = ("Image", "Env", "Args", "Command", "Labels")


def running_on_spec(service: dict[str, Any], all_tasks: Sequence[Task]) -> int:
    """Running tasks of SERVICE (an inspect dict) that run its current spec, not a previous one.

    Right after `docker stack deploy` the swarm still shows the old tasks (and no update
    status yet): counting only tasks on the new spec is what makes the wait honest.
    """
    name = service["Spec"]["Name"]
    template = service["Spec"]["TaskTemplate"]
    want = {k: (template.get("ContainerSpec") or {}).get(k) for k in _SPEC_KEYS}
    return sum(1 for t in all_tasks if t.service == name and t.state == "running" and t.desired == "running"
               and {k: (t.spec.get("ContainerSpec") or {}).get(k) for k in _SPEC_KEYS} == want
               and t.spec.get("ForceUpdate", 0) == template.get("ForceUpdate", 0))


def failure_reason(client: DockerClient, service: str, all_tasks: Sequence[Task], since: str = "",
                   log_lines: int = 12) -> list[str]:
    """Why tasks of SERVICE failed since SINCE: the task's error, its last log lines and, for an
    unhealthy one, its last healthcheck probes.

    Read through the manager (`docker service logs TASK`), so it works for a task on any node
    that is still reachable.
    """
    failed = [t for t in all_tasks if t.service == service and t.timestamp >= since
              and (t.state in FAILED_STATES or (t.error and t.state not in ("running", "complete")))]
    if not failed:
        return []
    task = failed[0]
    lines = [f"task {task.id[:12]} ({task.state}): {task.error or task.message}"]
    # Not --raw: with --raw, --tail prints nothing (docker 20.10). Each line is "name@node | text";
    # the task's stderr arrives on ours, so both streams are read together.
    from montero_ops.services.dockercmd import docker_cmd

    cmd = docker_cmd(client) + ["service", "logs", "--no-trunc", "--tail", str(log_lines), task.id]
    try:
        logs = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=30,
                              check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        logs = ""
    lines += [f"  {line.partition(' | ')[2] or line}" for line in logs.splitlines()[-log_lines:] if line.strip()]
    if "unhealthy" in f"{task.error} {task.message}" and task.container:
        lines += _health_output(docker_cmd(client), task)
    return lines


def _health_output(docker: list[str], task: Task, probes: int = 3) -> list[str]:
    """The last healthcheck probes of an unhealthy task's container (exit code and output).

    The manager's engine only holds its own node's containers: for a task on another node
    the line says where to look instead.
    """
    cmd = [*docker, "container", "inspect", "--format", "{{json .State.Health}}", task.container]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        done = None
    if done is None or done.returncode != 0:
        where = (f"  health output: on the task's node ({task.node_id[:12]}): docker inspect --format "
                 f"'{{{{json .State.Health.Log}}}}' {task.container[:12]}")
        return [where]
    try:
        health = json.loads(done.stdout or "null") or {}
    except json.JSONDecodeError:
        return []
    out = []
    for probe in (health.get("Log") or [])[-probes:]:
        text = " ".join(str(probe.get("Output", "")).split())[:300] or "(no output)"
        out.append(f"  health probe exit {probe.get('ExitCode', '?')}: {text}")
    return out
