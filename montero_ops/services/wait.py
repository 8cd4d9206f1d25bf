"""Waiting, written once: `wait_until` polls, `readiness` says what a ready container is.

Every wait in montero (up's health gate, a rolling step's new replica, a backup restarting
the stack, a swarm deploy converging, a Redis BGSAVE, PostgreSQL's app coming back) is
`wait_until(check, timeout, interval)`: CHECK returns a value when the wait is over, None
to keep waiting, or raises to fail at once. Time comes in through `clock` and `sleep` (the
test hook: pass a fake clock, never patch the time module), looked up at call time.

`readiness` is the one definition of a container's readiness, from its state, its
healthcheck's status and its exit code. A running container without a healthcheck is
ready (compose's `service_started`); STOPPED, a container that exited with code 0, is
left to the caller: `up` accepts it (a one-shot job is done), a service a backup or a
rolling step needs running does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")


class Readiness(StrEnum):
    READY = "ready"  # running, healthy or without a healthcheck
    STARTING = "starting"  # healthcheck still starting, or created/restarting/paused
    FAILED = "failed"  # unhealthy, or stopped with a non-zero exit code
    STOPPED = "stopped"  # exited/dead with code 0 (or none known)


def readiness(state: str, health: str | None, exit_code: int | None = None) -> Readiness:
    """STATE is the engine's (running, exited, restarting, created, paused, dead), HEALTH the
    healthcheck's (healthy, unhealthy, starting; None or "none" without one)."""
    if health == "unhealthy":
        return Readiness.FAILED
    if state in ("exited", "dead"):
        return Readiness.FAILED if exit_code not in (0, None) else Readiness.STOPPED
    if state == "running" and health in (None, "none", "healthy"):
        return Readiness.READY
    return Readiness.STARTING


def wait_until(check: Callable[[], T | None], timeout: float, interval: float,
               clock: Callable[[], float] | None = None,
               sleep: Callable[[float], None] | None = None) -> T | None:
    """Call CHECK until it returns something other than None and return that; None once
    TIMEOUT seconds have passed (CHECK always runs at least once, and once more after the
    last sleep before the deadline). An exception from CHECK ends the wait."""
    clock = clock or time.monotonic
    sleep = sleep or time.sleep
    deadline = clock() + timeout
    while True:
        result = check()
        if result is not None:
            return result
        if clock() >= deadline:
            return None
        sleep(interval)
