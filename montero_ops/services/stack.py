"""Stack lifecycle: build, up (health-gated), down, start/stop/restart, scale.

`up` starts detached, then waits until every container with a healthcheck is
healthy. When one is not, the report carries what explains it: the service's last
log lines and its health-probe outputs (the kamal approach).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from montero_ops.errors import MonteroError, StackUnhealthy, UsageError
from montero_ops.project import Project
from montero_ops.services.status import SERVICE_LABEL, ContainerStatus, container_statuses, health_log
from montero_ops.services.wait import Readiness, readiness, wait_until

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from montero_ops.dockerapi import DockerAPI
    from montero_ops.engine import ContainerReader

PRODUCTION_PROFILE = "production"
PRODUCTION_FILE = "compose.production.yml"
POSTGRES_PROFILE = "postgres"
POSTGRES_FILE = "compose.postgres.yml"
MONITORING_PROFILE = "monitoring"
MONITORING_FILE = "compose.monitoring.yml"
MONITORING_SERVICES = frozenset({"prometheus", "redis-exporter", "nginx-exporter", "blackbox-exporter",
                                 "backup-exporter"})
REPLICATE_PROFILE = "replicate"
REPLICATE_FILE = "compose.replicate.yml"
REPLICATE_SERVICES = frozenset({"replicate"})
LOG_LINES = 30
RESTARTS_BEFORE_FAILING = 2
# Module-level so tests can replace time without touching the global time module.
_clock = time.monotonic
_sleep = time.sleep


def with_profiles(project: Project, profiles: list[str]) -> Project:
    """The project with extra profiles; `production` also layers docker/compose.production.yml."""
    variant = project.with_profiles(*profiles)
    extra = project.root / "docker" / PRODUCTION_FILE
    if PRODUCTION_PROFILE in variant.profiles and extra.is_file() and extra not in variant.compose_files:
        variant = variant.with_compose_files(extra)
    # `postgres` layers docker/compose.postgres.yml (the postgres service, the app's DATABASE_URL).
    pg_file = project.root / "docker" / POSTGRES_FILE
    if POSTGRES_PROFILE in variant.profiles and pg_file.is_file() and pg_file not in variant.compose_files:
        variant = variant.with_compose_files(pg_file)
    # `monitoring` layers docker/compose.monitoring.yml (Prometheus and the exporters).
    mon_file = project.root / "docker" / MONITORING_FILE
    if MONITORING_PROFILE in variant.profiles and mon_file.is_file() and mon_file not in variant.compose_files:
        variant = variant.with_compose_files(mon_file)
    # `replicate` layers docker/compose.replicate.yml (Litestream streaming the SQLite WAL offsite).
    rep_file = project.root / "docker" / REPLICATE_FILE
    if REPLICATE_PROFILE in variant.profiles and rep_file.is_file() and rep_file not in variant.compose_files:
        variant = variant.with_compose_files(rep_file)
    return variant


def current_variant(engine: ContainerReader, project: Project) -> Project:
    """The project as it was started: with the production profile when its services exist.

    `down`/`stop` without the profile would leave nginx behind (compose only acts on
    services of active profiles).
    """
    from montero_ops.services.status import defined_services

    running = {(c.get("Labels") or {}).get(SERVICE_LABEL, "") for c in engine.project_containers(project.name)}
    extra = running - set(defined_services(project)) if running else set()
    if not extra:
        return project
    # postgres running means the app was started on it: keep that file, or the app is recreated on SQLite.
    profiles = [PRODUCTION_PROFILE] if extra - {POSTGRES_PROFILE} - MONITORING_SERVICES - REPLICATE_SERVICES else []
    profiles += [POSTGRES_PROFILE] if POSTGRES_PROFILE in extra else []
    profiles += [MONITORING_PROFILE] if extra & MONITORING_SERVICES else []
    profiles += [REPLICATE_PROFILE] if extra & REPLICATE_SERVICES else []
    return with_profiles(project, profiles)


def parse_scales(items: list[str]) -> dict[str, int]:
    """`app=3` → {"app": 3}; anything else is a usage error."""
    scales: dict[str, int] = {}
    for item in items:
        name, sep, count = item.partition("=")
        if not sep or not name or not count.isdigit():
            raise UsageError(f"invalid scale '{item}': expected SERVICE=N, e.g. app=3")
        scales[name] = int(count)
    return scales


def _stamp(client: DockerClient) -> None:
    """Label the app image with its sources' digest (doctor images.app compares contents, not times)."""
    from montero_ops.client import built_from
    from montero_ops.services.sources import stamp_sources

    project = built_from(client).project
    if project is not None:
        stamp_sources(project.root)


def _prepare_redis_volume(client: DockerClient) -> None:
    """Redis runs non-root: its volume must be its user's before it starts (services/redis_volume.py)."""
    from python_on_whales.exceptions import DockerException

    from montero_ops.client import built_from
    from montero_ops.services import redis_volume

    project = built_from(client).project
    if project is None:
        return
    name = project.name
    try:
        config = client.compose.config(return_json=True)
    except (DockerException, ValueError):
        return  # compose up reports a broken compose file itself, in its own words
    if isinstance(config, dict):
        redis_volume.prepare(client, config, name)


def build(client: DockerClient, services: list[str], no_cache: bool = False) -> None:
    _stamp(client)
    client.compose.build(services=services or None, cache=not no_cache)


APP_UID = 1000  # the image's appuser (docker/Dockerfile)


def prepare_dirs(project: Project) -> None:
    """./data and ./logs exist and belong to the app's uid before compose bind-mounts them.

    Docker would create missing ones owned by root, which the non-root app cannot write.
    Only root can chown; others get the entrypoint's fix message if ownership is wrong.
    """
    for folder in (project.data_dir, project.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
        if hasattr(os, "geteuid") and os.geteuid() == 0 and folder.stat().st_uid == 0:
            os.chown(folder, APP_UID, APP_UID)


def up(client: DockerClient, build: bool = False, scales: dict[str, int] | None = None) -> None:
    _stamp(client)  # compose builds a missing image even without --build
    _prepare_redis_volume(client)
    client.compose.up(detach=True, build=build, scales=scales or {})


@dataclass
class FailureReport:
    """Why the stack is not healthy, with the evidence to print."""

    service: str
    container: str
    reason: str
    container_id: str = ""
    logs: list[str] = field(default_factory=list)
    probes: list[str] = field(default_factory=list)

    @property
    def cause(self) -> str | None:
        """The service's own one-line reason, e.g. the app's configuration error, if its logs hold one."""
        for line in reversed(self.logs):
            if _CAUSE.search(line) and not _NOISE.search(line):
                return line.strip()[:300]
        return None


_CAUSE = re.compile(r"error|refus|fatal|denied|not writable|exception|bad file format", re.IGNORECASE)
# gunicorn's own shutdown chatter names no cause; the line before it does.
_NOISE = re.compile(r"Worker failed to boot|Shutting down: Master|Reason: Worker|Traceback|HaltServer"
                    r"|another exception occurred", re.IGNORECASE)


def _failed(c: ContainerStatus) -> str | None:
    verdict = readiness(c.state, c.health, c.exit_code)
    if verdict is Readiness.FAILED:
        return "is unhealthy" if c.health == "unhealthy" else f"exited with code {c.exit_code}"
    return None


def _pending(c: ContainerStatus) -> bool:
    return readiness(c.state, c.health, c.exit_code) is Readiness.STARTING and c.state != "paused"


def wait_healthy(
    engine: DockerAPI,
    project: str,
    timeout: float,
    poll: float = 0.25,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], None] | None = None,
) -> list[ContainerStatus]:
    """Poll until no container is starting; raise with the first failing one.

    A poll is one Engine API listing (a few ms); every 0.25 s rather than 1 s, `up` returns within a
    quarter second of the last healthcheck passing instead of up to a second later (figure 4)."""
    first_restarts: dict[str, int] = {}
    pending: list[ContainerStatus] = []

    def settled() -> list[ContainerStatus] | None:
        states = container_statuses(engine, project)
        for c in states:
            reason = _failed(c)
            # A crash loop under `restart: unless-stopped` never turns unhealthy: stop waiting.
            restarted = c.restarts - first_restarts.setdefault(c.id, c.restarts)
            if reason is None and restarted >= RESTARTS_BEFORE_FAILING:
                reason = f"keeps restarting ({restarted} restarts while waiting)"
            if reason:
                raise StackUnhealthy(FailureReport(c.service, c.name, reason, c.id))
        pending[:] = [c for c in states if _pending(c)]
        return None if pending else states

    states = wait_until(settled, timeout, poll, clock or _clock, sleep or _sleep)
    if states is None:
        c = pending[0]
        raise StackUnhealthy(FailureReport(c.service, c.name, f"is not healthy after {timeout:g}s ({c.condition})", c.id))
    return states


def address(states: list[ContainerStatus]) -> str | None:
    """Where to open the stack: nginx's HTTPS (else HTTP) port in production, else the app's
    lowest published port (MONTERO_APP_PORTS is a range, so the engine may pick any of it)."""
    def published(service: str, private: int) -> list[int]:
        found = []
        for c in states:
            if c.service != service:
                continue
            for text in c.ports:
                match = re.fullmatch(r".*:(\d+)->(\d+)/tcp", text)
                if match and int(match.group(2)) == private:
                    found.append(int(match.group(1)))
        return sorted(found)

    for service, private, scheme in (("nginx", 443, "https"), ("nginx", 80, "http"), ("app", 5000, "http")):
        ports = published(service, private)
        if ports:
            default = {"https": 443, "http": 80}[scheme]
            host = "localhost" if ports[0] == default else f"localhost:{ports[0]}"
            return f"{scheme}://{host}/health"
    return None


def first_failure(engine: DockerAPI, project: str, error: str = "", settle: float = 0.0) -> FailureReport | None:
    """After compose itself failed: the container that explains it, if any.

    The container compose names in its error comes first ("dependency failed to start:
    container shop-redis-1 is unhealthy"); then one failing now (unhealthy, or in a crash loop:
    restarting, or restarted by its policy and not healthy yet) before one that merely exited
    (with the stale health of its last probes):
    after a `stop` the app is exited with its stale logs, while Redis crash-looping on a damaged
    AOF is the cause (issue 22 point 9). Compose's words are often not captured (it prints them
    itself), and a crash loop may be between two runs: `settle` seconds are given for it to show.
    """
    deadline = _clock() + settle
    while True:
        states = container_statuses(engine, project)
        for c in states:
            if c.name and error and re.search(rf"\b{re.escape(c.name)}\b", error):
                return FailureReport(c.service, c.name, _failed(c) or f"is {c.condition}", c.id)
        for c in states:
            # Only a running container's health is current: a stopped one keeps its last probes'.
            if c.state == "restarting" or (c.state == "running" and (
                    c.health == "unhealthy" or (c.restarts > 0 and c.health != "healthy"))):
                return FailureReport(c.service, c.name, _failed(c) or "keeps restarting", c.id)
        if _clock() >= deadline:
            break
        _sleep(0.5)
    for c in states:
        reason = _failed(c)
        if reason:
            return FailureReport(c.service, c.name, reason, c.id)
    for c in states:
        if _pending(c):
            return FailureReport(c.service, c.name, f"is {c.condition}", c.id)
    return None


def add_evidence(client: DockerClient, engine: DockerAPI, report: FailureReport) -> FailureReport:
    """Fill in the service's last log lines and its health-probe outputs."""
    from python_on_whales.exceptions import DockerException

    from montero_ops.services.dockercmd import compose_cmd, run_capture

    cmd = compose_cmd(client) + ["logs", "--no-color", "--tail", str(LOG_LINES), "--no-log-prefix", report.service]
    try:
        text = run_capture(cmd)  # compose writes both container streams to stdout
        report.logs = [line for line in str(text).splitlines() if line.strip()][-LOG_LINES:]
    except DockerException:
        report.logs = []
    try:
        for probe in health_log(engine, report.container_id or report.container)[-3:]:
            # The last line says what failed (a Python probe's traceback ends with the error).
            lines = [ln.strip() for ln in str(probe.get("Output", "")).splitlines() if ln.strip()]
            output = lines[-1][:300] if lines else ""
            report.probes.append(f"exit {probe.get('ExitCode')}: {output}".rstrip())
    except MonteroError:  # the container may be gone already; evidence is best effort
        report.probes = []
    return report


def volumes_to_delete(engine: DockerAPI, project: str) -> list[str]:
    return engine.project_volumes(project)


def down(client: DockerClient, volumes: bool = False) -> None:
    client.compose.down(volumes=volumes, remove_orphans=True)


def start(client: DockerClient, services: list[str]) -> None:
    client.compose.start(services=services or None)


def stop(client: DockerClient, services: list[str]) -> None:
    client.compose.stop(services=services or None)


def restart(client: DockerClient, services: list[str]) -> None:
    client.compose.restart(services=services or None)


@dataclass
class DatabaseVerdict:
    problem: str | None = None  # the database fails its integrity check
    note: str | None = None  # the check could not finish in time


def database_verdict(project: Project, seconds: float) -> DatabaseVerdict | None:
    """PRAGMA integrity_check of the SQLite file, bounded in time; None when there is none (PostgreSQL)."""
    from montero_ops.services.backups.sqlite_db import database_path, integrity_check_bounded

    try:
        db = database_path(project)
    except MonteroError:
        return None
    if not db.exists():
        return None
    result = integrity_check_bounded(db, seconds)
    if result is None:
        return DatabaseVerdict(note=f"{db.name}: PRAGMA integrity_check did not finish within {seconds:g} s; "
                                    "`montero backups verify` after a backup runs it in full")
    if result != "ok":
        return DatabaseVerdict(problem=f"{db.name} fails PRAGMA integrity_check: {result}")
    return DatabaseVerdict()
