"""`montero doctor --swarm`: the cluster as its manager sees it, one finding per problem.

Down or drained nodes, services below their replica count or stuck in an update, tasks the
scheduler cannot place (no node satisfies the constraints) and tasks that failed recently.
Everything is read through the client's docker CLI, so DOCKER_HOST / --context choose the manager.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from montero_ops.services import swarm
from montero_ops.services.doctor.finding import Finding, failed, passed, warned

if TYPE_CHECKING:
    from python_on_whales import DockerClient

RECENT = timedelta(minutes=10)
PENDING = {"new", "pending", "assigned", "accepted", "preparing", "ready", "starting"}


def _recent(timestamp: str, now: datetime) -> bool:
    try:
        when = datetime.fromisoformat(timestamp[:26].rstrip("Z") + "+00:00" if timestamp else "")
    except ValueError:
        return False
    return now - when <= RECENT


def check_swarm(client: DockerClient, stack: str, now: datetime | None = None) -> list[Finding]:
    from montero_ops.services.deploy import _inspect_services, require_manager, status

    now = now or datetime.now(UTC)
    require_manager(client)
    findings: list[Finding] = []
    all_nodes = swarm.nodes(client)
    bad = [n for n in all_nodes if not n.usable]
    for n in bad:
        if n.state != "ready":
            findings.append(failed(f"swarm.node.{n.name}", f"node {n.name} ({n.id[:12]}, {n.role}) is {n.state}",
                                   "start its Docker daemon (its tasks were moved to the other nodes), or "
                                   f"remove it: `docker node rm --force {n.id[:12]}`"))
        else:
            findings.append(warned(f"swarm.node.{n.name}", f"node {n.name} is {n.availability}: it runs no new tasks",
                                   f"`docker node update --availability active {n.id[:12]}`"))
    if not bad:
        findings.append(passed("swarm.nodes", f"{len(all_nodes)} node(s) ready and active"))
    specs = _inspect_services(client, stack)
    if not specs:
        findings.append(failed("swarm.stack", f"no stack named {stack!r} on this swarm",
                               "`montero swarm deploy --stack NAME` (or pass the right --stack)"))
        return findings
    all_tasks = swarm.tasks(client, stack, {s["ID"]: s["Spec"]["Name"] for s in specs})
    state = status(client, stack, specs, all_tasks)
    for svc in state.services:
        short = svc.name.removeprefix(f"{stack}_")
        pending = [t for t in all_tasks if t.service == svc.name and t.desired == "running" and t.state in PENDING]
        stuck = [t for t in pending if t.error]
        recent_failures = [t for t in all_tasks if t.service == svc.name and t.state in swarm.FAILED_STATES
                           and _recent(t.timestamp, now)]
        if stuck:
            findings.append(failed(f"swarm.{short}.placement",
                                   f"{svc.name}: {len(stuck)} task(s) cannot be placed: {stuck[0].error}",
                                   "check the node labels and resources the service needs "
                                   "(docs/production.md, \"Several hosts\"): `docker node ls`, "
                                   f"`docker service ps --no-trunc {svc.name}`"))
        if svc.running < svc.desired or svc.update_state in ("paused", "rollback_paused"):
            update = f", update {svc.update_state}: {svc.update_message}" if svc.update_state else ""
            findings.append(failed(f"swarm.{short}", f"{svc.name} runs {svc.running}/{svc.desired} replicas{update}",
                                   f"`montero logs --stack {stack} {short}`; `docker service ps --no-trunc {svc.name}`"))
        elif not stuck:
            spread = ", ".join(f"{node} {count}" for node, count in svc.tasks_per_node.items())
            findings.append(passed(f"swarm.{short}", f"{svc.name} {svc.running}/{svc.desired} ({spread})"))
        if recent_failures:
            last = recent_failures[0]
            findings.append(warned(f"swarm.{short}.failures",
                                   f"{svc.name}: {len(recent_failures)} task(s) failed in the last "
                                   f"{int(RECENT.total_seconds() // 60)} minutes; last: {last.error or last.state}",
                                   f"`docker service logs --tail 50 {last.id[:12]}`"))
    return findings
