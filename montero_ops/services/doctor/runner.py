"""Run every check concurrently, each bounded in time, and apply repairs on request.

The daemon check runs first: every check that needs Docker is skipped with a clear
status when it fails. The rest run together in threads (they are independent: files,
/proc, Engine API reads); a check that overruns its budget becomes a finding instead
of a hang, and one that crashes becomes a warning instead of a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

from montero_ops.errors import DockerUnavailable, EngineError
from montero_ops.project import Project
from montero_ops.services.doctor.config import check_config
from montero_ops.services.doctor.connectivity import check_connectivity
from montero_ops.services.doctor.containers import check_health, check_restarts
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.data import check_backups, check_database
from montero_ops.services.doctor.disk import check_disk
from montero_ops.services.doctor.docker_checks import START_DOCKER, check_compose, check_versions, connect
from montero_ops.services.doctor.drill import check_drill
from montero_ops.services.doctor.finding import Finding, Repair, Report, Status, failed, skipped, warned
from montero_ops.services.doctor.images import check_images
from montero_ops.services.doctor.locking import check_locking
from montero_ops.services.doctor.monitoring import check_monitoring
from montero_ops.services.doctor.ports import check_ports
from montero_ops.services.doctor.production import check_production
from montero_ops.services.doctor.redis_aof import check_redis_aof
from montero_ops.services.doctor.replication import check_replication
from montero_ops.services.doctor.restore import check_restore
from montero_ops.services.doctor.schedule import check_schedule

DEFAULT_TIMEOUT = 8.0


@dataclass(frozen=True)
class Check:
    id: str  # names the finding when the check is skipped, times out or crashes
    run: Callable[[Context], list[Finding]]
    needs_docker: bool = False


CHECKS: list[Check] = [
    Check("docker.version", check_versions, needs_docker=True),
    Check("compose.plugin", check_compose),
    Check("ports", check_ports),
    Check("disk", check_disk),
    Check("sqlite", check_locking),
    Check("restarts", check_restarts, needs_docker=True),
    Check("health", check_health, needs_docker=True),
    Check("config", check_config),
    Check("connect", check_connectivity),
    Check("data", check_database),
    Check("data.backups", check_backups),
    Check("data.restore", check_restore),
    Check("data.redis_aof", check_redis_aof, needs_docker=True),
    Check("images.app", check_images, needs_docker=True),
    Check("prod", check_production),
    Check("schedule", check_schedule),
    Check("backups.drill", check_drill),
    Check("monitoring.alerts", check_monitoring, needs_docker=True),
    Check("replication", check_replication, needs_docker=True),
]


def production_project(project: Project) -> Project:
    """The production view: the nginx profile plus docker/compose.production.yml when it exists."""
    override = project.root / "docker" / "compose.production.yml"
    if override.is_file() and override not in project.compose_files:
        project = project.with_compose_files(override)
    return project.with_profiles("production")


def run_doctor(
    project: Project, production: bool = False, timeout: float = DEFAULT_TIMEOUT, checks: list[Check] | None = None
) -> Report:
    if production:
        project = production_project(project)
    ctx = Context(project, production=production, timeout=timeout)
    budget = timeout * 1.5 + 1
    pool = ThreadPoolExecutor(max_workers=len(checks or CHECKS) + 1, thread_name_prefix="doctor")
    try:
        daemon = _bounded(pool.submit(connect, ctx), "docker.daemon", budget, True)
        findings: list[Finding] = list(daemon) if isinstance(daemon, list) else [daemon]
        futures: list[tuple[Check, Future[list[Finding]] | None]] = []
        for check in checks or CHECKS:
            if check.needs_docker and not ctx.docker_up:
                futures.append((check, None))
            else:
                futures.append((check, pool.submit(check.run, ctx)))
        deadline = time.monotonic() + budget
        for check, future in futures:
            if future is None:
                findings.append(skipped(check.id, "Docker is not reachable (see docker.daemon)"))
                continue
            result = _bounded(future, check.id, max(deadline - time.monotonic(), 0.1), check.needs_docker)
            findings.extend(result if isinstance(result, list) else [result])
    finally:
        # Never wait for a hung check: its own socket/subprocess timeout ends its thread later.
        pool.shutdown(wait=False, cancel_futures=True)
    for f in findings:
        f.message, f.fix = ctx.scrub(f.message), ctx.scrub(f.fix)
    return Report(findings)


def _bounded(
    future: Future[list[Finding]] | Future[Finding], check_id: str, budget: float, docker: bool
) -> Finding | list[Finding]:
    try:
        return future.result(timeout=budget)
    except FutureTimeout:
        fix = "sudo systemctl restart docker   # the daemon is hung" if docker else ""
        return failed(check_id, f"no answer within {budget:.0f}s (a hung Docker daemon or filesystem?)", fix)
    except DockerUnavailable as exc:
        return failed(check_id, exc.message, exc.hint or START_DOCKER)
    except EngineError as exc:
        return failed(check_id, exc.message, exc.hint or "montero --debug doctor   # shows the request that failed")
    except Exception as exc:  # noqa: BLE001 - a crashing check must not hide the others' findings
        return warned(check_id, f"check could not run: {type(exc).__name__}: {exc}", "montero --debug doctor")


def apply_repairs(report: Report, confirm: Callable[[Finding, Repair], bool]) -> list[tuple[Finding, str]]:
    """Apply safe repairs; ask `confirm` before any other. Returns (finding, outcome) pairs."""
    done: list[tuple[Finding, str]] = []
    for finding in report.findings:
        repair = finding.repair
        if repair is None or finding.status not in (Status.WARN, Status.FAIL):
            continue
        if not repair.safe and not confirm(finding, repair):
            done.append((finding, f"skipped: {repair.description}"))
            continue
        try:
            done.append((finding, repair.apply()))
        except Exception as exc:  # noqa: BLE001 - report, then go on with the other repairs
            done.append((finding, f"could not {repair.description}: {exc}"))
    return done
