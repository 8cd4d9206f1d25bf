"""Running compose commands whose output belongs to the user's terminal.

python-on-whales captures output for most calls; `exec`, `logs`, `shell`, `test`
and `migrate` must stream and keep stdin, so they run through python-on-whales'
`run` with capture off. Going through that one function keeps the docker boundary
a single patch point for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from python_on_whales import DockerClient


def compose_cmd(client: DockerClient) -> list[str]:
    """`docker compose --file … --project-name … --project-directory …` for this project."""
    return [str(part) for part in client.client_config.docker_compose_cmd]


def run_passthrough(cmd: list[str]) -> int:
    """Run with the terminal attached (stdin, stdout, stderr); return the exit code."""
    from python_on_whales.components.compose import cli_wrapper
    from python_on_whales.exceptions import DockerException

    try:
        cli_wrapper.run(cmd, capture_stdout=False, capture_stderr=False)  # type: ignore[attr-defined]
    except DockerException as exc:
        return int(exc.return_code)
    return 0


def run_capture(cmd: list[str]) -> str:
    """Run and return stdout; failures raise python-on-whales' DockerException."""
    from python_on_whales.components.compose import cli_wrapper

    return str(cli_wrapper.run(cmd))  # type: ignore[attr-defined]
