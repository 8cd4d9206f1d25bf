"""exec, shell: run something inside a running service container; test: the backend suite in a one-off one."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from montero_ops.commands._common import print_verbose
from montero_ops.state import State, get_state

if TYPE_CHECKING:
    from python_on_whales import DockerClient


def _tty() -> bool:
    return sys.stdin.isatty() and sys.stdout.isatty()


def run_in(state: State, service: str, build_cmd: Callable[[DockerClient], list[str]]) -> None:
    """Check the service runs, run the command attached, exit with its exit code."""
    from montero_ops.services.dockercmd import run_passthrough
    from montero_ops.services.stack import current_variant
    from montero_ops.services.status import require_running

    project = state.project()
    engine = state.docker()
    # As started: nginx and postgres exist only with their profile's compose file.
    client = state.client(current_variant(engine, project))
    require_running(engine, project.name, service)
    cmd = build_cmd(client)
    print_verbose(state.verbose, cmd)
    code = run_passthrough(cmd)
    if code:
        raise typer.Exit(code)


def exec_(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service to run in, e.g. app.", show_default=False)],
    command: Annotated[list[str], typer.Argument(help="Command and its arguments (after --).", show_default=False)],
    user: Annotated[str | None, typer.Option("--user", "-u", help="Run as this user, e.g. root.")] = None,
) -> None:
    """Run a command in a running service container; exits with the command's code.

    Example: montero exec app --user root -- ls -la /app/data
    """
    from montero_ops.services.containers import exec_cmd

    run_in(get_state(ctx), service, lambda client: exec_cmd(client, service, command, _tty(), user=user))


def shell(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(help="Service to open a shell in.")] = "app",
    root: Annotated[bool, typer.Option("--root", help="Open the shell as root.")] = False,
) -> None:
    """Open an interactive shell (bash, else sh) in a service container.

    Example: montero shell app --root
    """
    from montero_ops.services.containers import shell_cmd

    run_in(get_state(ctx), service, lambda client: shell_cmd(client, service, _tty(), root=root))


def test(
    ctx: typer.Context,
    pytest_args: Annotated[
        list[str] | None, typer.Argument(help="Arguments for pytest (after --).", show_default=False)
    ] = None,
    cov: Annotated[bool, typer.Option("--cov", help="Measure coverage of montero_api.")] = False,
) -> None:
    """Run the backend's pytest suite (tests/backend) in a one-off container; exits with pytest's code.

    Builds the app image's `test` stage first (docker/compose.test.yml; cached after the
    first run), then runs pytest in `docker run --rm` with this checkout's backend/ and
    tests/backend mounted read-only. The stack need not be running.

    Example: montero test --cov -- -k health -x
    """
    from montero_ops.services.testrun import run_tests, suite_project

    state = get_state(ctx)
    project = state.project()
    client = state.client(suite_project(project))
    code = run_tests(client, project, pytest_args or [], _tty(), cov=cov,
                     show=lambda cmd: print_verbose(state.verbose, cmd))
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("exec")(exec_)
    app.command()(shell)
    app.command()(test)
