"""Rolling restart of a scaled service behind nginx, one replica at a time, without dropping requests.

For each old replica: start one more (`compose up --scale app=N+1 --no-recreate --no-deps`),
wait until it is healthy, then stop the old one gracefully (gunicorn finishes its in-flight
requests on SIGTERM) and remove it. Before the stop, nginx is pinned to the other replicas, the
new one included (`montero-nginx pin`, a graceful reload): a replica shutting down would reset
connections still queued on its socket, and nginx never replays a POST that was sent, so no new
request may reach it. After the removal nginx goes back to Docker's DNS. Without nginx (replicas
published directly) there is nothing to pin: the step waits `dns_grace` instead.

While a replacement starts and until it is healthy, nginx is pinned to the replicas already
serving, so a replica that never gets healthy (a release that fails at import, crash-looping
under its restart policy) receives no request. A step that fails undoes itself: the replica it
started is removed, nginx goes back to the healthy replicas, and the image tag the service runs
(`montero-app:latest`) is pointed back at the image the old replicas run, so the next `scale` or
`up` does not start the broken build either. The old replicas and the replica count are untouched.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from montero_ops.errors import CommandFailed, StackNotRunning, UsageError
from montero_ops.services.wait import Readiness, readiness, wait_until

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from montero_ops.dockerapi import DockerAPI
    from montero_ops.project import Project

Progress = Callable[[str], None]
DNS_GRACE_S = 6.0  # nginx's `resolver … valid=5s` plus a second


@dataclass
class RollingResult:
    service: str
    replaced: list[str] = field(default_factory=list)  # names of the replicas taken out
    started: list[str] = field(default_factory=list)  # names of the replicas that replaced them

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replicas(engine: DockerAPI, project: str, service: str, running_only: bool = True) -> list[dict[str, Any]]:
    """The service's containers, oldest first (the list form of the Engine API: Id, Names, Created, State)."""
    found = [
        c for c in engine.project_containers(project, all=not running_only)
        if c.get("Labels", {}).get("com.docker.compose.service") == service
        and c.get("Labels", {}).get("com.docker.compose.oneoff", "False") != "True"
    ]
    return sorted(found, key=lambda c: (c.get("Created", 0), _name(c)))


def _name(container: dict[str, Any]) -> str:
    names = container.get("Names") or [container.get("Id", "")[:12]]
    return str(names[0]).lstrip("/")


def _health_of(state: dict[str, Any]) -> str:
    """'healthy' | 'unhealthy' | 'starting' | 'none' (no healthcheck) | 'exited' | 'restarting' …"""
    if state.get("Restarting"):
        return "restarting"
    if not state.get("Running"):
        return str(state.get("Status", "exited"))
    return str((state.get("Health") or {}).get("Status", "none"))


def wait_healthy(engine: DockerAPI, container_id: str, timeout: float, interval: float = 1.0) -> None:
    """Until the new replica is ready (services/wait.py); a crash loop or a failure ends the wait."""
    status = "starting"

    def ready() -> bool | None:
        nonlocal status
        doc = engine.inspect(container_id)
        state = doc.get("State", {})
        status = _health_of(state)
        engine_state = "running" if state.get("Running") else str(state.get("Status", "exited"))
        verdict = readiness("restarting" if state.get("Restarting") else engine_state,
                            (state.get("Health") or {}).get("Status"), state.get("ExitCode"))
        if verdict is Readiness.READY:
            return True
        if verdict is not Readiness.STARTING or status == "restarting":
            raise _not_healthy(container_id, status)
        if doc.get("RestartCount", 0):
            raise _not_healthy(container_id, "crash-looping")
        return None

    if wait_until(ready, timeout, interval) is None:
        raise _not_healthy(container_id, status)


def _not_healthy(container_id: str, status: str) -> CommandFailed:
    return CommandFailed(
        f"the new replica {container_id[:12]} is {status}, not healthy: the old replicas keep serving",
        hint="see `montero logs app --tail 50`; nothing was stopped",
    )


def rolling_restart(
    client: DockerClient,
    project: Project,
    service: str = "app",
    timeout: float = 180.0,
    dns_grace: float = DNS_GRACE_S,
    stop_timeout: int = 30,
    progress: Progress = lambda _msg: None,
    *,
    engine: DockerAPI,
    check: Callable[[], None] | None = None,
    only: set[str] | None = None,
) -> RollingResult:
    """Replace the service's replicas (or only those whose ids are in `only`) one at a time.

    `check` runs once a replacement is healthy and again after each old replica is gone; it may
    raise to stop (a deploy's probe stream that saw an error). A failure while a replacement is
    starting, or in `check` before the old replica was retired, undoes that step (`_undo_step`)
    and raises `ReplicaFailed` with the replacement's last log lines and health-probe output.
    """
    running = replicas(engine, project.name, service)
    if not running:
        raise StackNotRunning(service)
    if dns_grace < 0 or timeout <= 0:
        raise UsageError("--timeout must be positive and the DNS grace not negative")
    old = [c for c in running if only is None or c["Id"] in only]
    count = len(running)
    total = len(old)
    result = RollingResult(service=service)
    # The image the old replicas run is what a failed step points the tag back at. A deploy
    # moves the tag to the new release before calling this, so it is read from the replicas.
    previous = _image_of(engine, old[0]["Id"]) if old else ("", "")
    proxy = _nginx(engine, project.name)
    # Between two steps nginx stays pinned to the replicas serving (the set the next step pins
    # anyway): each graceful reload closes idle keep-alive client connections, so a rolling restart
    # of N replicas reloads N + 2 times, not 4 N.
    pinned: list[str] | None = None
    for index, victim in enumerate(old, start=1):
        known = {c["Id"] for c in replicas(engine, project.name, service, running_only=False)}
        serving = replicas(engine, project.name, service)
        progress(f"[{index}/{total}] starting a replacement for {_name(victim)}")
        failing: tuple[str, str, tuple[list[str], list[str]]] = ("", "", ([], []))
        serving_at = [a for c in serving for a in _addresses(engine, c["Id"], proxy)] if proxy else []
        if proxy and sorted(serving_at) != sorted(pinned or []):  # no request reaches the replacement early
            _nginx_script(client, proxy, "pin", *serving_at)
            time.sleep(PIN_SETTLE_S)
        try:
            client.compose.up(services=[service], scales={service: count + 1}, recreate=False, dependencies=False,
                              detach=True, no_build=True, quiet=True)
            fresh = [c for c in replicas(engine, project.name, service, running_only=False) if c["Id"] not in known]
            if not fresh:
                raise CommandFailed(f"compose started no new '{service}' replica", hint="run `montero ps` to see why")
            new = fresh[-1]
            try:
                wait_healthy(engine, new["Id"], timeout)
                if check:
                    check()
            except BaseException:
                failing = (new["Id"], _name(new), evidence(engine, new["Id"]))  # before _undo_step removes it
                raise
        except BaseException as exc:
            _undo_step(client, engine, project, service, known, previous, proxy, progress)
            if isinstance(exc, CommandFailed):
                cid, name, (logs, probes) = failing
                raise ReplicaFailed(f"{exc.message}; the step was undone", exc.hint, cid, name, logs,
                                    probes) from exc
            raise
        result.started.append(_name(new))
        if proxy:
            # nginx is still pinned to the serving replicas: retire() pins it to every replica but
            # the old one, the new one included, in one graceful reload. No DNS wait (a reload starts
            # workers with an empty resolver cache) and one reload fewer per step: each reload
            # closes idle keep-alive client connections (docs/releases.md).
            progress(f"[{index}/{total}] {_name(new)} is healthy; nginx moves to it")
        else:
            progress(f"[{index}/{total}] {_name(new)} is healthy; waiting {dns_grace:.0f}s for nginx to see it")
            time.sleep(dns_grace)
        last = index == total
        pinned = retire(client, engine, project, service, [victim], stop_timeout,
                        _prefixed(progress, f"[{index}/{total}] "), unpin=last)
        result.replaced.append(_name(victim))
        if check:
            try:
                check()
            except BaseException:
                if proxy and not last:
                    _nginx_script(client, proxy, "unpin")
                raise
    return result


class ReplicaFailed(CommandFailed):
    """A rolling step failed and was undone; carries what the failing replica said."""

    def __init__(self, message: str, hint: str | None, container_id: str = "", name: str = "",
                 logs: list[str] | None = None, probes: list[str] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.container_id = container_id
        self.name = name
        self.logs = logs or []
        self.probes = probes or []


EVIDENCE_LINES = 80  # a crash at import: the cause sits above gunicorn's own traceback


def evidence(engine: DockerAPI, container_id: str) -> tuple[list[str], list[str]]:
    """The replica's last log lines and health-probe outputs (best effort: it may be gone)."""
    from montero_ops.errors import MonteroError
    from montero_ops.services.status import health_log

    try:
        logs = [ln for ln in engine.logs_tail(container_id, EVIDENCE_LINES).splitlines() if ln.strip()]
    except MonteroError:
        logs = []
    probes: list[str] = []
    try:
        for probe in health_log(engine, container_id)[-3:]:
            lines = [ln.strip() for ln in str(probe.get("Output", "")).splitlines() if ln.strip()]
            probes.append(f"exit {probe.get('ExitCode')}: {lines[-1][:300] if lines else ''}".rstrip())
    except MonteroError:
        probes = []
    return logs[-EVIDENCE_LINES:], probes


def _image_of(engine: DockerAPI, container_id: str) -> tuple[str, str]:
    """(image id, image reference such as montero-app:latest) a container runs."""
    info = engine.inspect(container_id)
    return str(info.get("Image", "")), str((info.get("Config") or {}).get("Image", ""))


def _undo_step(client: DockerClient, engine: DockerAPI, project: Project, service: str, known: set[str],
               previous: tuple[str, str], proxy: str | None, progress: Progress) -> None:
    """Remove the replicas a failed step started, point the service's image tag back at the image
    the old replicas run, and send nginx back to Docker's DNS (which then names only the old ones)."""
    from python_on_whales.exceptions import DockerException

    for extra in replicas(engine, project.name, service, running_only=False):
        if extra["Id"] not in known:
            progress(f"removing the failed replica {_name(extra)}")
            try:
                client.container.remove(extra["Id"], force=True)
            except DockerException:
                pass
    image_id, reference = previous
    if image_id and reference and not reference.startswith("sha256:"):
        current = engine.image_inspect(reference)
        if not current or current.get("Id") != image_id:
            progress(f"pointing {reference} back at the image the old replicas run ({image_id[7:19]})")
            try:
                client.image.tag(image_id, reference)
            except DockerException:
                pass
    if proxy:
        _nginx_script(client, proxy, "unpin")


def _prefixed(progress: Progress, prefix: str) -> Progress:
    return lambda message: progress(prefix + message)


def retire(client: DockerClient, engine: DockerAPI, project: Project, service: str, victims: list[dict[str, Any]],
           stop_timeout: int = 30, progress: Progress = lambda _msg: None, unpin: bool = True) -> list[str]:
    """Stop and remove replicas without a request reaching them while they shut down.

    With nginx running, it is first pinned to the other replicas (graceful reload); afterwards
    it goes back to Docker's DNS, unless `unpin` is False (a rolling restart that goes on
    pinned: it unpins once at its end, or on a failure). Returns the addresses nginx was pinned to.
    """
    gone = {v["Id"] for v in victims}
    proxy = _nginx(engine, project.name)
    names = ", ".join(_name(v) for v in victims)
    keep: list[str] = []
    if proxy:
        keep = [a for c in replicas(engine, project.name, service) if c["Id"] not in gone
                for a in _addresses(engine, c["Id"], proxy)]
        if not keep:
            raise UsageError(f"refusing to stop every '{service}' replica behind nginx")
        progress(f"nginx sends no new request to {names}")
        _nginx_script(client, proxy, "pin", *keep)
        time.sleep(PIN_SETTLE_S)
    progress(f"stopping {names} (in-flight requests finish first)")
    done = False
    try:
        for victim in victims:
            client.container.stop(victim["Id"], time=stop_timeout)
            client.container.remove(victim["Id"], force=True)
        done = True
    finally:
        if proxy and (unpin or not done):
            _nginx_script(client, proxy, "unpin")
    return keep


def scale_down(client: DockerClient, project: Project, service: str, target: int,
               progress: Progress = lambda _msg: None, *, engine: DockerAPI) -> list[str]:
    """Remove the newest replicas above `target` through `retire` (compose would stop them while
    nginx still sends them requests). Returns the names removed; compose then finds `target` running."""
    running = replicas(engine, project.name, service)
    victims = running[target:] if 0 < target < len(running) else []
    if victims and _nginx(engine, project.name):
        retire(client, engine, project, service, victims, progress=progress)
        return [_name(v) for v in victims]
    return []


PIN_SETTLE_S = 2.0  # nginx's graceful reload: new workers take over, old ones finish their requests


def _nginx(engine: DockerAPI, project: str) -> str | None:
    """The running nginx container of the project (production profile), if any."""
    running = replicas(engine, project, "nginx")
    return running[0]["Id"] if running else None


def _addresses(engine: DockerAPI, container_id: str, proxy_id: str, port: int = 5000) -> list[str]:
    """IP:port of the replica on the network(s) it shares with nginx."""
    shared = set(engine.inspect(proxy_id).get("NetworkSettings", {}).get("Networks", {}))
    networks = engine.inspect(container_id).get("NetworkSettings", {}).get("Networks", {})
    return [f"{net['IPAddress']}:{port}" for name, net in networks.items() if name in shared and net.get("IPAddress")]


def _nginx_script(client: DockerClient, proxy_id: str, *args: str) -> None:
    """Run docker/nginx/montero-nginx.sh in the nginx container (pin IP:PORT… | unpin)."""
    from python_on_whales.exceptions import DockerException

    try:
        client.container.execute(proxy_id, ["sh", "/usr/local/bin/montero-nginx", *args])
    except DockerException as exc:
        raise CommandFailed(f"nginx refused `montero-nginx {args[0]}`: {(exc.stderr or '').strip()[-300:]}",
                            hint="check `montero logs nginx`") from exc
