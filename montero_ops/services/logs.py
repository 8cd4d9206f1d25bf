"""Compose logs, streamed straight to the terminal.

`--follow` runs `docker compose logs -f` as our own child process: a python-on-whales
stream does not end that process when the reader stops, so Ctrl-C would leave it behind.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from montero_ops.services.dockercmd import compose_cmd, run_passthrough

if TYPE_CHECKING:
    from python_on_whales import DockerClient


def logs_cmd(
    client: DockerClient,
    services: list[str],
    follow: bool = False,
    tail: str | None = None,
    since: str | None = None,
    until: str | None = None,
    timestamps: bool = False,
) -> list[str]:
    cmd = compose_cmd(client) + ["logs"]
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
    return run_passthrough(cmd)


def follow(cmd: list[str]) -> int:
    """Stream until the process ends or Ctrl-C; the child never outlives us."""
    process = subprocess.Popen(cmd)
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
