"""logs: the stack's output, streamed as lines arrive."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.commands._common import print_verbose
from montero_ops.state import get_state


def logs(
    ctx: typer.Context,
    services: Annotated[list[str] | None, typer.Argument(help="Services (default: all).", show_default=False)] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming new lines (Ctrl-C stops).")] = False,
    tail: Annotated[str | None, typer.Option("--tail", "-n", help="Lines from the end per container, or 'all'.")] = None,
    since: Annotated[str | None, typer.Option("--since", help="Since a timestamp or a duration (10m).")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Until a timestamp or a duration.")] = None,
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Show timestamps.")] = False,
    stack: Annotated[str | None, typer.Option(
        "--stack", "-s", help="A swarm stack's services instead (docker service logs, any node's tasks).")] = None,
) -> None:
    """Show the stack's logs, streaming lines as they arrive.

    Example: montero logs app -f --tail 100 --since 10m
    """
    from montero_ops.services import logs as service

    if tail is not None and tail != "all" and not tail.isdigit():
        from montero_ops.errors import UsageError

        raise UsageError(f"invalid --tail '{tail}': expected a number or 'all'")
    service.check_time("--since", since)
    service.check_time("--until", until)
    if stack:
        _swarm_logs(ctx, stack, services or [], follow, tail, since, until, timestamps)
        return
    from montero_ops.client import compose_base_cmd, require_docker_cli
    from montero_ops.services.stack import current_variant

    state = get_state(ctx)
    require_docker_cli()
    # The daemon answers (exit 3 with the fix otherwise), without python-on-whales; the
    # project as started, so nginx's and postgres' logs are there on those profiles.
    project = current_variant(state.engine(), state.project())
    if services:
        from montero_ops.services.status import start_defined_services

        defined = start_defined_services(project)()  # cached: no compose run on the usual path
        unknown = [s for s in services if s not in defined]
        if defined and unknown:
            from montero_ops.errors import UsageError

            raise UsageError(f"no service named {', '.join(unknown)} in this stack (services: {', '.join(defined)})",
                             hint="pick one of those, or run `montero logs` for all of them")
    cmd = service.logs_cmd(compose_base_cmd(project), services or [], follow, tail, since, until, timestamps)
    print_verbose(state.verbose, cmd)
    code = service.follow(cmd) if follow else service.show(cmd)
    if code:
        from montero_ops.client import compose_plugin_missing

        if compose_plugin_missing():
            from montero_ops.client import COMPOSE_HINT
            from montero_ops.errors import DockerUnavailable

            raise DockerUnavailable("the Docker Compose v2 plugin is missing", hint=COMPOSE_HINT)
        raise typer.Exit(code)


def _swarm_logs(ctx: typer.Context, stack: str, services: list[str], follow: bool, tail: str | None,
                since: str | None, until: str | None, timestamps: bool) -> None:
    from montero_ops.client import require_docker_cli
    from montero_ops.errors import UsageError
    from montero_ops.services import logs as service

    require_docker_cli()
    if until:
        raise UsageError("--until does not apply to a swarm service's logs", hint="use --since and --tail")
    # docker alone, no compose project: `logs --stack` works outside a project, as before.
    defined = service.stack_services(get_state(ctx).plain_client(), stack)
    if not defined:
        raise UsageError(f"no stack named {stack!r} on this swarm", hint="see `montero swarm status --stack NAME`")
    unknown = [s for s in services if s not in defined]
    if unknown:
        raise UsageError(f"no service named {', '.join(unknown)} in stack {stack} (services: {', '.join(defined)})",
                         hint="pick one of those, or leave it out for all of them")
    chosen = services or defined
    if follow and len(chosen) != 1:
        raise UsageError("--follow on a swarm follows one service", hint=f"e.g. montero logs --stack {stack} app -f")
    code = 0
    for cmd in service.service_logs_cmds(stack, chosen, follow, tail, since, timestamps):
        print_verbose(get_state(ctx).verbose, cmd)
        code = (service.follow(cmd) if follow else service.show(cmd)) or code
    if code:
        raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command()(logs)
