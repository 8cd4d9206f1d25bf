"""Compose logs, streamed straight to the terminal.

`logs` is the command people run most, so it skips python-on-whales entirely: the
compose command line comes from the Project (standard library only) and compose runs
as our own child process with the terminal attached. With `--follow` that child must
end with us: a python-on-whales stream does not stop `docker compose logs -f` when the
reader stops, so Ctrl-C would leave it behind.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from python_on_whales import DockerClient

# What docker accepts for --since/--until (its timetypes.GetTimestamp): a Go duration
# (10m, 1h30m, 1.5h, 300ms), a Unix timestamp (1700000000[.123]), or an RFC 3339-style time
# (2024-05-01, 2024-05-01T10:00:00[.123][Z|+02:00]).
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_UNIX = re.compile(r"^\d+(?:\.\d{1,9})?$")
_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}(?:T\d{2}(?::\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?)?(?:Z|[+-]\d{2}:\d{2})?$"
)


def check_time(option: str, value: str | None) -> None:
    """Refuse what docker would silently ignore (`--since banana` printed nothing, exit 0)."""
    if value is None or _DURATION.match(value) or _UNIX.match(value) or _TIME.match(value):
        return
    from montero_ops.errors import UsageError

    raise UsageError(
        f"invalid {option} '{value}': expected a duration (10m, 1h30m), an RFC 3339 time "
        "(2024-05-01T10:00:00Z) or a Unix timestamp",
    )


def logs_cmd(
    base: list[str],
    services: list[str],
    follow: bool = False,
    tail: str | None = None,
    since: str | None = None,
    until: str | None = None,
    timestamps: bool = False,
) -> list[str]:
    """`base` is the project's `docker compose …` prefix (client.compose_base_cmd)."""
    cmd = [*base, "logs"]
    if follow:
        cmd.append("--follow")
    if tail is not None:
        cmd += ["--tail", tail]
    if since:
        cmd += ["--since", since]
    if until:
        cmd += ["--until", until]
    if timestamps:
        cmd.append("--timestamps")
    return cmd + services


def service_logs_cmds(
    stack: str,
    services: list[str],
    follow: bool = False,
    tail: str | None = None,
    since: str | None = None,
    timestamps: bool = False,
) -> list[list[str]]:
    """`docker service logs` per swarm service (it takes one at a time); the manager gathers
    each task's lines from whichever node runs it. SERVICES are short names (app, nginx)."""
    from montero_ops.client import DEFAULT_CLIENT_CALL

    options = ["--follow"] if follow else []
    if tail is not None:
        options += ["--tail", tail]
    if since:
        options += ["--since", since]
    if timestamps:
        options.append("--timestamps")
    return [[*DEFAULT_CLIENT_CALL, "service", "logs", *options, f"{stack}_{name}"] for name in services]


def stack_services(client: DockerClient, stack: str) -> list[str]:
    """Short names of the stack's services, [] when there is no such stack (typed models:
    `client.service.list`, through the client's DOCKER_HOST / --context)."""
    from python_on_whales.exceptions import DockerException

    from montero_ops.services import swarm

    try:
        names = swarm.stack_service_names(client, stack)
    except DockerException as exc:
        from montero_ops.errors import CommandFailed

        lines = (exc.stderr or "").strip().splitlines()
        raise CommandFailed(f"`docker service ls` failed: {lines[-1] if lines else exc.return_code}",
                            hint="point montero at a swarm manager (DOCKER_HOST or --context)") from None
    return sorted(name.removeprefix(f"{stack}_") for name in names)


def show(cmd: list[str]) -> int:
    return subprocess.call(cmd)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def follow(cmd: list[str]) -> int:
    """Stream until the process ends, Ctrl-C or SIGTERM; the child never outlives us."""
    process = subprocess.Popen(cmd)
    # SIGTERM (timeout, systemd, a test harness) would kill us and orphan the child.
    previous = signal.signal(signal.SIGTERM, _interrupt) if _main_thread() else None
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()
