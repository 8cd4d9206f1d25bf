"""services/wait.py: the one wait loop and the one definition of a container's readiness."""

from __future__ import annotations

import pytest

from montero_ops.services.wait import Readiness, readiness, wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_returns_the_first_answer_and_sleeps_between_checks() -> None:
    clock = FakeClock()
    answers = iter([None, None, "done"])
    assert wait_until(lambda: next(answers), timeout=10, interval=0.5, clock=clock, sleep=clock.sleep) == "done"
    assert clock.slept == [0.5, 0.5]


def test_times_out_with_none_after_checking_up_to_the_deadline() -> None:
    clock = FakeClock()
    calls: list[float] = []

    def never() -> None:
        calls.append(clock.now)

    assert wait_until(never, timeout=3, interval=1, clock=clock, sleep=clock.sleep) is None
    assert calls == [100.0, 101.0, 102.0, 103.0]  # the last check is at the deadline, then no more sleeping
    assert clock.slept == [1, 1, 1]


def test_a_check_that_raises_ends_the_wait_at_once() -> None:
    clock = FakeClock()

    def broken() -> None:
        raise RuntimeError("unhealthy")

    with pytest.raises(RuntimeError, match="unhealthy"):
        wait_until(broken, timeout=60, interval=1, clock=clock, sleep=clock.sleep)
    assert clock.slept == []


def test_a_falsy_answer_other_than_none_ends_the_wait() -> None:
    clock = FakeClock()
    assert wait_until(lambda: 0, timeout=5, interval=1, clock=clock, sleep=clock.sleep) == 0


@pytest.mark.parametrize(("state", "health", "exit_code", "expected"), [
    ("running", None, None, Readiness.READY),  # no healthcheck: ready once running
    ("running", "none", None, Readiness.READY),
    ("running", "healthy", None, Readiness.READY),
    ("running", "starting", None, Readiness.STARTING),
    ("running", "unhealthy", None, Readiness.FAILED),
    ("exited", "unhealthy", 0, Readiness.FAILED),  # a failing healthcheck wins over a clean exit
    ("exited", None, 1, Readiness.FAILED),
    ("dead", None, 137, Readiness.FAILED),
    ("exited", None, 0, Readiness.STOPPED),
    ("exited", None, None, Readiness.STOPPED),
    ("created", None, None, Readiness.STARTING),
    ("restarting", None, 1, Readiness.STARTING),
    ("paused", "healthy", None, Readiness.STARTING),
])
def test_readiness(state: str, health: str | None, exit_code: int | None, expected: Readiness) -> None:
    assert readiness(state, health, exit_code) is expected
