"""`up` (and `dev`): start the stack detached, then wait until it is healthy.

The orchestration both commands share, under services/ so a command only renders
(issue 13 point 6). On a failure the evidence (the failing service's last log lines
and health probes) goes to `on_failure` before the error is raised, exit 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from montero_ops.errors import MonteroError, StackUnhealthy
from montero_ops.services import stack

if TYPE_CHECKING:
    from montero_ops.services.stack import DatabaseVerdict, FailureReport
    from montero_ops.services.status import ContainerStatus
    from montero_ops.state import State

DB_CHECK_SECONDS = 5.0


@dataclass
class Started:
    """What `up` brought up; `states` is None when it did not wait for health."""

    states: list[ContainerStatus] | None
    verdict: DatabaseVerdict | None = None

    @property
    def healthy(self) -> int:
        return sum(1 for c in self.states or [] if c.health == "healthy")

    @property
    def address(self) -> str | None:
        return stack.address(self.states) if self.states else None


@contextlib.contextmanager
def _quietly(_message: str) -> Iterator[None]:
    yield


def start_and_wait(state: State, project_profiles: list[str], build: bool, scales: dict[str, int],
                   wait: bool, timeout: int, extra_files: tuple[Path, ...] = (), *,
                   on_failure: Callable[[FailureReport], None] = lambda _r: None,
                   waiting: Callable[[str], AbstractContextManager[None]] = _quietly) -> Started:
    """`up -d`, then wait for health (inside `waiting(message)`, e.g. a spinner)."""
    from python_on_whales.exceptions import DockerException

    project = stack.with_profiles(state.project(), project_profiles)
    for path in extra_files:
        project = project.with_compose_files(path)
    if stack.REPLICATE_PROFILE in project.profiles:
        from montero_ops.services.replication import preflight

        preflight(project)  # one red line now, not a replicate container restarting in a loop
    client = state.client(project)
    engine = state.docker()
    stack.prepare_dirs(project)
    try:
        stack.up(client, build=build, scales=scales)
    except DockerException as exc:
        from montero_ops.errors import docker_error_line

        said = docker_error_line(exc) if exc.stderr else ""  # compose printed its words itself
        report = stack.first_failure(engine, project.name, said, settle=0 if said else 10)
        if report:
            on_failure(stack.add_evidence(client, engine, report))
            if not said:
                # No words from compose: the failing service's own reason is the one line.
                raise StackUnhealthy(report) from exc
        raise
    if not wait:
        return Started(None)
    try:
        with waiting(f"waiting for services to be healthy (up to {timeout}s)"):
            states = stack.wait_healthy(engine, project.name, timeout)
    except StackUnhealthy as exc:
        report = stack.add_evidence(client, engine, exc.report)
        on_failure(report)
        raise StackUnhealthy(report) from exc  # now with the service's own reason
    started = Started(states)
    # Healthy containers on a damaged database are not a healthy stack (issue 22 point 6): the
    # check that gates backups, bounded in time.
    started.verdict = stack.database_verdict(project, DB_CHECK_SECONDS)
    if started.verdict is not None and started.verdict.problem:
        raise MonteroError(f"the containers are up ({len(states)}, {started.healthy} healthy), but "
                           f"{started.verdict.problem}",
                           hint="keep a copy of the damaged file, then `montero restore sqlite --latest --yes` "
                                "(docs/backups.md, Recovery)")
    return started
