"""build, up, down, start, stop, restart, scale: the stack's lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from montero_ops.commands._common import confirm_or_refuse, locked, start_and_wait
from montero_ops.commands._options import YesOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

Services = Annotated[list[str] | None, typer.Argument(help="Services (default: all).", show_default=False)]
DEFAULT_TIMEOUT = 180


def build(
    ctx: typer.Context,
    services: Services = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not use the build cache.")] = False,
) -> None:
    """Build the stack's images.

    Example: montero build app --no-cache
    """
    from montero_ops.output import success
    from montero_ops.services import stack

    stack.build(get_state(ctx).client(), services or [], no_cache=no_cache)
    success("images built")


def up(
    ctx: typer.Context,
    build: Annotated[bool, typer.Option("--build", help="Build images before starting.")] = False,
    profile: Annotated[
        list[str] | None,
        typer.Option("--profile", help="Enable a compose profile (production adds nginx, postgres PostgreSQL, monitoring Prometheus, replicate Litestream). Repeatable."),
    ] = None,
    scale: Annotated[list[str] | None, typer.Option("--scale", help="SERVICE=N replicas. Repeatable.")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for healthchecks.")] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for health.")] = DEFAULT_TIMEOUT,
) -> None:
    """Start the stack detached and wait until every service is healthy.

    On failure prints the failing service's last log lines and health probes, exit 1.

    Example: montero up --build --profile production --scale app=3
    """
    from montero_ops.services.backups.journal import resolve
    from montero_ops.services.stack import parse_scales

    scales = parse_scales(scale or [])
    with locked(ctx, "up"):
        start_and_wait(get_state(ctx), profile or [], build, scales, not no_wait, timeout)
        if not no_wait:
            resolve(get_state(ctx).project(), "up")  # an interrupted restore that changed nothing is over


def down(
    ctx: typer.Context,
    volumes: Annotated[bool, typer.Option("--volumes", "-v", help="Also delete the stack's volumes (data!).")] = False,
    yes: YesOption = False,
) -> None:
    """Stop and remove the stack's containers and networks (and volumes with --volumes).

    Example: montero down --volumes --yes
    """
    with locked(ctx, "down"):
        _down(ctx, volumes, yes)


def _down(ctx: typer.Context, volumes: bool, yes: bool) -> None:
    from montero_ops.output import info, success
    from montero_ops.services import stack

    state = get_state(ctx)
    engine = state.docker()
    project = stack.current_variant(engine, state.project())
    client = state.client(project)
    if volumes:
        names = stack.volumes_to_delete(engine, project.name)
        if names:
            info("These volumes will be deleted with all their data:")
            for name in names:
                info(f"  {name}")
            what = f"delete {len(names)} volume(s): {', '.join(names)}"
            if not confirm_or_refuse("Delete them?", what, yes):
                raise typer.Exit(ExitCode.FAILED)
    stack.down(client, volumes=volumes)
    success("stack removed" + (" with its volumes" if volumes else ""))


def _simple(action: str, summary: str, example: str) -> Callable[..., None]:
    def command(ctx: typer.Context, services: Services = None) -> None:
        from montero_ops.output import success
        from montero_ops.services import stack

        state = get_state(ctx)
        with locked(ctx, action):
            client = state.client(stack.current_variant(state.docker(), state.project()))
            getattr(stack, action)(client, services or [])
        success(f"{action}: {', '.join(services) if services else 'all services'}")

    command.__doc__ = f"{summary}\n\nExample: {example}\n"
    command.__name__ = action
    return command


def scale(
    ctx: typer.Context,
    replicas: Annotated[list[str], typer.Argument(help="SERVICE=N, e.g. app=3.", show_default=False)],
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Do not wait for healthchecks.")] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for health.")] = DEFAULT_TIMEOUT,
) -> None:
    """Run N replicas of a service (up -d --scale) and wait for health.

    Example: montero scale app=3
    """
    with locked(ctx, "scale"):
        _scale(ctx, replicas, no_wait, timeout)


def _scale(ctx: typer.Context, replicas: list[str], no_wait: bool, timeout: int) -> None:
    from montero_ops.output import info
    from montero_ops.services.rolling import scale_down
    from montero_ops.services.stack import current_variant, parse_scales

    state = get_state(ctx)
    scales = parse_scales(replicas)
    # With nginx running, scale inside the production variant: without its file and profile
    # compose would recreate every app replica (with host ports) and drop requests.
    variant = current_variant(state.docker(), state.project())
    # Behind nginx, surplus replicas are drained first (nginx pinned to the others), then removed.
    for service, count in scales.items():
        scale_down(state.client(variant), variant, service, count, progress=info, engine=state.docker())
    start_and_wait(state, list(variant.profiles), False, scales, not no_wait, timeout)


def restart(
    ctx: typer.Context,
    services: Services = None,
    rolling: Annotated[bool, typer.Option(
        "--rolling", help="Replace the replicas one at a time (start new, wait healthy, stop old): no dropped requests."
    )] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for each new replica.")] = DEFAULT_TIMEOUT,
) -> None:
    """Restart containers; --rolling replaces app replicas one by one without downtime behind nginx.

    Example: montero restart --rolling
    """
    if not rolling:
        return _simple("restart", "", "")(ctx, services)
    from montero_ops.output import info, success
    from montero_ops.services import stack
    from montero_ops.services.rolling import rolling_restart

    state = get_state(ctx)
    with locked(ctx, "restart"):
        project = stack.current_variant(state.docker(), state.project())
        for service in services or ["app"]:
            result = rolling_restart(state.client(project), project, service, timeout=timeout, progress=info,
                                     engine=state.docker())
            success(f"{service}: {len(result.replaced)} replica(s) replaced one at a time")


def register(app: typer.Typer) -> None:
    app.command()(build)
    app.command()(up)
    app.command()(down)
    app.command("start")(_simple("start", "Start the stack's stopped containers.", "montero start app"))
    app.command("stop")(_simple("stop", "Stop containers without removing them.", "montero stop redis"))
    app.command("restart")(restart)
    app.command()(scale)
