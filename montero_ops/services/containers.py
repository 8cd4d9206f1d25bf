"""Commands run inside a service's running container: exec, shell, migrate.

All go through `docker compose exec` with the terminal attached, so output streams
and the in-container exit code becomes montero's exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from montero_ops.services.dockercmd import compose_cmd

if TYPE_CHECKING:
    from python_on_whales import DockerClient

APP_SERVICE = "app"
APP_DIR = "/app"
# One exec that prefers bash and falls back to sh: no probe round-trip, works in slim images.
SHELL_CMD = ["sh", "-c", "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi"]


def exec_cmd(
    client: DockerClient,
    service: str,
    command: list[str],
    tty: bool,
    user: str | None = None,
    workdir: str | None = None,
) -> list[str]:
    """`docker compose exec`; `-T` (no pseudo-TTY) when stdin is not a terminal, so pipes work."""
    cmd = compose_cmd(client) + ["exec"]
    if not tty:
        cmd.append("-T")
    if user:
        cmd += ["--user", user]
    if workdir:
        cmd += ["--workdir", workdir]
    return cmd + [service, *command]


def shell_cmd(client: DockerClient, service: str, tty: bool, root: bool = False) -> list[str]:
    return exec_cmd(client, service, SHELL_CMD, tty, user="root" if root else None)


def alembic_cmd(client: DockerClient, alembic_args: list[str], tty: bool) -> list[str]:
    return exec_cmd(client, APP_SERVICE, ["alembic", *alembic_args], tty, workdir=APP_DIR)
