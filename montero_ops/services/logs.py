"""Compose logs, streamed straight to the terminal.

`logs` is the command people run most, so it skips python-on-whales entirely: the
compose command line comes from the Project (standard library only) and compose runs
as our own child process with the terminal attached. With `--follow` that child must
end with us: a python-on-whales stream does not stop `docker compose logs -f` when the
reader stops, so Ctrl-C would leave it behind.
"""

from __future__ import annotations

import signal
import subprocess
import threading


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
