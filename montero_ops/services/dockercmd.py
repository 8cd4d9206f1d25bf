"""The docker CLI commands montero runs itself, in one place.

python-on-whales' public API covers compose and stack actions, but not everything montero
needs: `exec`, `shell`, `test` and `migrate` stream with stdin kept; swarm image pushes,
`service rollback` and task logs have no typed call. Those run here, built from the
project (client.compose_base_cmd, the same prefix python-on-whales builds) and run with
subprocess: one patch point for tests, one logger for `--verbose`, and failures raised
as python-on-whales' public DockerException (the CLI's one docker error path shortens it
to its meaningful stderr line).
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from typing import TYPE_CHECKING

from montero_ops.client import built_from, compose_base_cmd

if TYPE_CHECKING:
    from python_on_whales import DockerClient

LOGGER = logging.getLogger("montero_ops.docker")


def compose_cmd(client: DockerClient) -> list[str]:
    """`docker compose --file … --project-name … --project-directory …` for the client's project."""
    built = built_from(client)
    if built.project is None:
        raise TypeError("this DockerClient has no compose project")
    return compose_base_cmd(built.project, docker_cmd(client))


def docker_cmd(client: DockerClient) -> list[str]:
    """The client's docker CLI, its binary as a full path like python-on-whales (what --verbose shows).

    DOCKER_HOST and --context (DOCKER_CONTEXT) reach it through the environment."""
    call = list(built_from(client).client_call)
    return [shutil.which(call[0]) or call[0], *call[1:]]


def _failed(cmd: list[str], code: int, stdout: bytes | None, stderr: bytes | None) -> Exception:
    from python_on_whales.exceptions import DockerException

    return DockerException(cmd, code, stdout, stderr)


def run(cmd: list[str], capture_stdout: bool = True, capture_stderr: bool = True) -> str:
    """Run and return stdout (its last newline dropped); a failure raises DockerException.

    Spelled like python-on-whales' own `run`: with both captures off the terminal stays
    attached (stdin, stdout, stderr) and "" is returned.
    """
    cmd = [str(part) for part in cmd]
    LOGGER.debug("Running command: %s", shlex.join(cmd))
    done = subprocess.run(cmd, stdout=subprocess.PIPE if capture_stdout else None,
                          stderr=subprocess.PIPE if capture_stderr else None, check=False)
    if done.returncode != 0:
        raise _failed(cmd, done.returncode, done.stdout, done.stderr)
    return (done.stdout or b"").decode(errors="replace").removesuffix("\n")


def docker(client: DockerClient, *args: str) -> str:
    """`docker ARGS…`, captured: swarm actions without a typed call, and the raw `service inspect`
    whose fields python-on-whales' ServiceSpec drops (docs/architecture.md)."""
    return run(docker_cmd(client) + list(args))


def run_passthrough(cmd: list[str]) -> int:
    """Run with the terminal attached (stdin, stdout, stderr); return the exit code."""
    from python_on_whales.exceptions import DockerException

    try:
        run(cmd, capture_stdout=False, capture_stderr=False)
    except DockerException as exc:
        return int(exc.return_code)
    return 0


def run_capture(cmd: list[str]) -> str:
    """Run and return stdout; failures raise python-on-whales' DockerException."""
    return run(cmd)
