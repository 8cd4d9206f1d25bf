"""The swarm target of `montero deploy`, `rollback` and `releases`: the same release, another how.

What a release is stays the host's (services/releases.py): an immutable image tag
`<repo>:<release id>`, a record with its receipt (here in `.montero/releases-swarm-<stack>.json`,
one history per stack), the images of releases beyond MONTERO_KEEP_RELEASES removed, a failed
release returned to the previous one with its reason. How it reaches the replicas is the swarm's:

  - the switch is `docker service update --image <release> <stack>_app` with start-first
    updates and failure action rollback (the update_config of docker/stack.yml, passed on the
    command line too so an edited stack file cannot lose them): the swarm starts each new task,
    waits for its healthcheck and the monitor period, then stops an old one. A new task that
    fails makes the swarm roll the service back by itself; montero waits for that, reads the
    failing task's error and last log lines (services/swarm.py) and says so (exit 1);
  - montero's probe stream (services/probe.py) goes through nginx's host-mode port when an
    nginx task runs on this node; a probe error makes montero ask the swarm to roll back;
  - on several nodes the release is pushed to --registry and deployed by digest (as
    `montero swarm deploy` does), since the other nodes cannot read this node's images;
  - there is no migration gate: the stack's database lives in a volume on one node (or in
    PostgreSQL), and each new task runs `alembic upgrade head` under the entrypoint's lock as
    it starts, while old tasks still serve (so migrations must be additive: docs/releases.md).
    The output and the release record say so.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from montero_ops.errors import CommandFailed, MonteroError, UsageError
from montero_ops.project import Project
from montero_ops.services import releases as rel
from montero_ops.services import swarm
from montero_ops.services.deploy import (
    _inspect_services,
    _update_marks,
    push_by_digest,
    require_manager,
    wait_converged,
)
from montero_ops.services.probe import ProbeStream, ProbeTarget
from montero_ops.services.release_deploy import DeployFailed, Outcome, ProbeFailed, build_release, probe_at

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]
SERVICE = "app"
_EXCEPTION = re.compile(r"^(?:\S+ )?[A-Za-z_][\w.]*(?:Error|Exception): ")
NO_GATE = ("no migration gate on a swarm: the stack's database is in its volume (or PostgreSQL); each new "
           "task migrates under the entrypoint's lock as it starts, while old tasks still serve")


def history_key(stack: str) -> str:
    return f"swarm-{stack}"


def load_history(project: Project, stack: str) -> rel.History:
    return rel.load_history(project, history_key(stack))


def _docker(client: DockerClient, *args: str) -> str:
    return swarm.docker(client, *args)


def app_spec(client: DockerClient, stack: str) -> dict[str, Any]:
    """The inspect document of `<stack>_app`; a clear error when the stack or the service is missing."""
    name = f"{stack}_{SERVICE}"
    for spec in _inspect_services(client, stack):
        if spec["Spec"]["Name"] == name:
            return spec
    raise CommandFailed(f"no service {name} on this swarm: the stack {stack!r} is not deployed",
                        hint=f"deploy it first: `montero swarm deploy --stack {stack}`")


def spec_image(spec: dict[str, Any]) -> str:
    return str(spec["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"])


def image_id(client: DockerClient, image: str) -> str | None:
    """The local image id of IMAGE on the manager, None when it has no such image."""
    from python_on_whales.exceptions import DockerException

    try:
        return _docker(client, "image", "inspect", "--format", "{{.Id}}", image).strip() or None
    except DockerException:  # no such image on this node
        return None


def adopt_running(history: rel.History, client: DockerClient, stack: str, configured: str,
                  progress: Progress) -> rel.Release:
    """What the stack's app runs becomes a release (to roll back to) before the first deploy."""
    reference = spec_image(app_spec(client, stack))
    local = image_id(client, swarm.image_without_digest(reference))
    digest = local or (reference.split("@", 1)[1] if "@" in reference else reference)
    current = history.current_release()
    if current and (current.reference or current.image) == reference:
        return current
    when = rel.utc_now()
    release_id = rel.new_release_id("adopted", when, {r.id for r in history.releases})
    image = reference
    if local:
        image = rel.release_tag(configured, release_id)
        _docker(client, "image", "tag", local, image)
    release = rel.Release(id=release_id, image=image, digest=digest, commit=None, created_at=rel.iso(when),
                          # The immutable tag, not what ran: that may be the configured tag, which moves.
                          by=rel.deployer(), kind="adopted", outcome="ok", reference=image,
                          reason=f"the image stack {stack} ran before montero recorded its releases")
    history.releases.append(release)
    history.current = release.id
    rel.save_history(history)
    progress(f"recorded the image {stack}_{SERVICE} runs as release {release_id} (to roll back to)")
    return release


def _remote(client: DockerClient) -> bool:
    """True when the docker CLI talks to another machine (no probe on 127.0.0.1 then)."""
    from montero_ops.services.dockercmd import docker_cmd

    cmd = docker_cmd(client)
    host = os.environ.get("DOCKER_HOST", "")
    return any(flag in cmd for flag in ("--host", "-H", "--context", "-c")) or bool(host and
                                                                                   not host.startswith("unix://"))


def probe_target(client: DockerClient, stack: str) -> ProbeTarget | None:
    """nginx's host-mode port on this node, when one of the stack's nginx tasks runs here."""
    if _remote(client):
        return None
    name = f"{stack}_nginx"
    specs = {s["Spec"]["Name"]: s for s in _inspect_services(client, stack)}
    nginx = specs.get(name)
    if nginx is None:
        return None
    here = swarm.engine_swarm(client).node_id
    running = [t for t in swarm.tasks(client, stack, {s["ID"]: n for n, s in specs.items()})
               if t.service == name and t.state == "running" and t.node_id == here]
    if not running:
        return None
    ports = (nginx.get("Endpoint") or {}).get("Ports") or (nginx["Spec"].get("EndpointSpec") or {}).get("Ports") or []
    published = {p.get("TargetPort"): p.get("PublishedPort") for p in ports if p.get("PublishedPort")}
    return probe_at(published.get(80), published.get(443))


def service_update(client: DockerClient, stack: str, reference: str, registry: bool) -> None:
    """The release reaches the replicas: start-first, and the swarm rolls back a failing update."""
    _docker(client, "service", "update", "--detach", "--image", reference, "--update-order", "start-first",
            "--update-failure-action", "rollback", "--rollback-order", "start-first",
            *(["--with-registry-auth"] if registry else ["--no-resolve-image"]), f"{stack}_{SERVICE}")


def _evidence(client: DockerClient, lines: list[str]) -> dict[str, Any]:
    """The failing task's line and log lines (what wait_converged printed) as the bundle's fields."""
    from montero_ops.services.stack import FailureReport

    task = next((ln for ln in lines if ln.startswith("task ")), None)
    logs = [ln.strip() for ln in lines if ln.startswith("  ")]
    found: dict[str, Any] = {"replica": task.split(" ", 2)[1] if task else None, "logs": logs,
                             "health": [task] if task else []}
    # A Python exception line names the cause better than gunicorn's own [ERROR] chatter around it
    # ("Worker … was sent SIGTERM!", which a task's last lines often end with).
    raised = [ln for ln in logs if _EXCEPTION.search(ln) and "HaltServer" not in ln]
    cause = raised[-1][:300] if raised else FailureReport(SERVICE, found["replica"] or "", "", logs=logs).cause
    if cause:
        found["cause"] = cause
    return found


def _switch(client: DockerClient, stack: str, reference: str, registry: bool, timeout: float, progress: Progress,
            probe: ProbeStream | None) -> int:
    """Update the app service to REFERENCE and wait until every replica runs it; returns how many.

    Raises CommandFailed when the swarm rolled the update back (a new task failed), ProbeFailed
    when montero's probe saw an error (the caller then asks the swarm to roll back).
    """
    replicas = int(((app_spec(client, stack)["Spec"].get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
    before = _update_marks(client, stack)
    progress(f"updating {stack}_{SERVICE} to {reference} (start-first, one task at a time, health-gated by the swarm)")
    service_update(client, stack, reference, registry)

    def check() -> None:
        if probe and probe.failed:
            raise ProbeFailed(f"the deploy's probe saw an error through nginx: {probe.first_error}")

    # TIMEOUT is per replica, as on one host: the swarm replaces them one after the other.
    state = wait_converged(client, stack, timeout * max(1, replicas), progress, since=before, check=check)
    app = next(s for s in state.services if s.name == f"{stack}_{SERVICE}")
    return app.running


def _back(client: DockerClient, stack: str, timeout: float, progress: Progress, probe_failed: bool) -> None:
    """After a failed switch: make sure the swarm has rolled the service back, and wait for it."""
    if probe_failed:
        progress(f"asking the swarm to roll {stack}_{SERVICE} back")
        _docker(client, "service", "rollback", "--detach", f"{stack}_{SERVICE}")
    wait_converged(client, stack, timeout, progress)


def deploy(client: DockerClient, project: Project, stack: str, registry: str | None = None, timeout: float = 300.0,
           progress: Progress = lambda _m: None, after_build: Callable[[str], None] | None = None) -> Outcome:
    """Build a release, update the stack's app service to it, prove it, record it."""
    started = time.monotonic()
    require_manager(client)
    history = load_history(project, stack)
    keep = rel.keep_count(project)
    configured = rel.configured_image(project)
    nodes = swarm.nodes(client)
    if len(nodes) > 1 and not registry:
        raise UsageError(f"this swarm has {len(nodes)} nodes: the other nodes cannot pull a release built here",
                         hint="pass --registry HOST:PORT (montero pushes the release there and deploys it by digest)")
    previous = adopt_running(history, client, stack, configured, progress)

    when = rel.utc_now()
    commit = rel.git_commit(project.root)
    release_id = rel.new_release_id(commit, when, {r.id for r in history.releases})
    tag = rel.release_tag(configured, release_id)
    build_release(client, project, tag, progress)
    release = rel.Release(id=release_id, image=tag, digest=image_id(client, tag) or "", commit=commit,
                          created_at=rel.iso(when), by=rel.deployer())
    history.releases.append(release)
    rel.save_history(history)
    progress(f"release {release_id} built ({release.digest[7:19]})")
    try:
        if after_build:
            after_build(tag)
        release.reference = push_by_digest(client, tag, registry, progress) if registry else tag
    except MonteroError as exc:
        release.outcome, release.reason = "failed", exc.message
        release.receipt = rel.Receipt(duration_s=round(time.monotonic() - started, 1))
        rel.save_history(history)
        raise
    progress(NO_GATE)

    target = probe_target(client, stack)
    probe = ProbeStream(target).start() if target else None
    said: list[str] = []

    def collect(line: str) -> None:
        said.append(line)
        progress(line)

    try:
        replaced = _switch(client, stack, release.reference, bool(registry), timeout, collect, probe)
    except (MonteroError, Exception) as exc:
        reason = exc.message if isinstance(exc, MonteroError) else f"{type(exc).__name__}: {exc}"
        found = _evidence(client, said)
        if found.get("cause"):
            reason = f"{reason}: {found['cause']}"
        progress(f"the switch failed ({reason}); the stack returns to {previous.id}")
        _back(client, stack, timeout, progress, isinstance(exc, ProbeFailed))
        if probe:
            probe.stop()
        release.outcome, release.reason = "rolled-back", reason
        release.failure = {"reason": reason, "probe_first_error": probe.first_error if probe else None,
                           "returned_to": previous.id, **found}
        release.receipt = _receipt(0, probe, started)
        history.current = previous.id
        rel.save_history(history)
        raise DeployFailed(f"deploy of {release_id} to stack {stack} failed and was rolled back to {previous.id}: "
                           f"{reason}", hint="the database was not rolled back; new tasks may have migrated it "
                                              "(additive migrations keep the old release working)",
                           release=release) from exc
    if probe:
        probe.stop()
    _docker(client, "image", "tag", tag, configured)  # a later `montero swarm deploy` deploys the same bytes
    release.outcome = "ok"
    release.reason = NO_GATE
    release.receipt = _receipt(replaced, probe, started)
    history.current = release.id
    notes = _prune(client, history, keep)
    rel.save_history(history)
    notes.insert(0, NO_GATE)
    if target is None:
        notes.append("no nginx task runs on this node: no probe stream measured the switch")
    return Outcome(release, previous.id, notes)


def _receipt(replaced: int, probe: ProbeStream | None, started: float) -> rel.Receipt:
    return rel.Receipt(
        duration_s=round(time.monotonic() - started, 1), replicas_replaced=replaced,
        probes_sent=probe.sent if probe else 0, probes_failed=probe.failed if probe else 0,
        reconnects=probe.reconnects if probe else 0,
        p50_ms=probe.percentile(50) if probe else None, p99_ms=probe.percentile(99) if probe else None,
        first_error=probe.first_error if probe else None,
    )


def _prune(client: DockerClient, history: rel.History, keep: int) -> list[str]:
    """Release images beyond MONTERO_KEEP_RELEASES: removed when no task container still uses them."""
    from python_on_whales.exceptions import DockerException

    notes: list[str] = []
    for old in rel.prune_plan(history, keep):
        try:
            _docker(client, "image", "rm", old.image)
        except DockerException:  # still used by a task's container: tried again after the next deploy
            continue
        old.pruned = True
        notes.append(f"release {old.id}: image {old.image} removed (MONTERO_KEEP_RELEASES={keep})")
    return notes


def rollback(client: DockerClient, project: Project, stack: str, target_id: str | None = None,
             with_data: bool = False, timeout: float = 300.0, progress: Progress = lambda _m: None) -> Outcome:
    """Back to the previous (or named) release: the same service update, the same proof."""
    started = time.monotonic()
    if with_data:
        raise UsageError("--with-data is for one host: on a swarm the database is the stack's volume or PostgreSQL",
                         hint=f"roll back without it, then restore with `montero restore postgres --stack {stack}` "
                              "if the data must go back too")
    require_manager(client)
    history = load_history(project, stack)
    current = history.current_release()
    if current is None:
        raise UsageError(f"no release is recorded for stack {stack}",
                         hint=f"deploy one with `montero deploy --stack {stack}`")
    target = history.get(target_id) if target_id else history.previous()
    if target is None:
        known = ", ".join(r.id for r in history.releases) or "none"
        raise UsageError(f"no release {target_id!r} to roll back to" if target_id
                         else "there is no earlier release to roll back to", hint=f"releases: {known}")
    if target.id == current.id:
        raise UsageError(f"release {target.id} is already the current one",
                         hint=f"see `montero releases --stack {stack}`")
    reference = target.reference or target.image
    when = rel.utc_now()
    record = rel.Release(id=rel.new_release_id("rollback", when, {r.id for r in history.releases}),
                         image=target.image, digest=target.digest, commit=target.commit, created_at=rel.iso(when),
                         by=rel.deployer(), kind="rollback", revision=target.revision, rollback_of=current.id,
                         reference=reference)
    probe_at_ = probe_target(client, stack)
    probe = ProbeStream(probe_at_).start() if probe_at_ else None
    said: list[str] = []

    def collect(line: str) -> None:
        said.append(line)
        progress(line)

    try:
        replaced = _switch(client, stack, reference, "@" in reference, timeout, collect, probe)
    except (MonteroError, Exception) as exc:
        reason = exc.message if isinstance(exc, MonteroError) else f"{type(exc).__name__}: {exc}"
        _back(client, stack, timeout, progress, isinstance(exc, ProbeFailed))
        if probe:
            probe.stop()
        record.outcome, record.reason = "failed", reason
        record.failure = {"reason": reason, "probe_first_error": probe.first_error if probe else None,
                          **_evidence(client, said)}
        history.releases.append(record)
        rel.save_history(history)
        raise DeployFailed(f"rollback of stack {stack} to {target.id} failed; {current.id} still runs: {reason}",
                           hint=f"see `montero releases --stack {stack} --json` for the bundle",
                           release=record) from exc
    if probe:
        probe.stop()
    if image_id(client, target.image):  # a later `montero swarm deploy` deploys the same bytes
        _docker(client, "image", "tag", target.image, rel.configured_image(project))
    record.outcome = "ok"
    record.receipt = _receipt(replaced, probe, started)
    current.outcome = "rolled-back"
    history.releases.append(record)
    history.current = target.id
    rel.save_history(history)
    return Outcome(record, current.id, [])


def stack_exists(client: DockerClient, stack: str) -> bool:
    """True when this engine is a swarm manager running `<stack>_app` (no error otherwise)."""
    from python_on_whales.exceptions import DockerException

    try:
        engine = swarm.engine_swarm(client)
        if engine.state != "active" or not engine.manager:
            return False
        full = f"{stack}_{SERVICE}"
        return any(s.spec.name == full for s in client.service.list(filters=[("name", full)]) if s.spec)
    except DockerException:
        return False
