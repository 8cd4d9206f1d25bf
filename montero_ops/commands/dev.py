"""dev: the hot-reload development mode."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.state import get_state


def dev(
    ctx: typer.Context,
    build: Annotated[bool, typer.Option("--build", help="Build images before starting.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Do not follow the app's logs.")] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for health.")] = 180,
) -> None:
    """Run the stack with backend/ bind-mounted and `flask run --reload` (development).

    Follows the app's logs until Ctrl-C; the stack keeps running. `montero up` returns to normal mode.

    Example: montero dev --build
    """
    from montero_ops.commands._common import start_and_wait
    from montero_ops.output import info
    from montero_ops.services import logs
    from montero_ops.services.containers import APP_SERVICE
    from montero_ops.services.dev import write_override

    state = get_state(ctx)
    path = write_override(state.project())
    info(f"development override: {path}")
    start_and_wait(state, [], build, {}, True, timeout, extra_files=(path,))
    if detach:
        info("follow the app with `montero logs -f app`")
        return
    from montero_ops.client import compose_base_cmd

    base = compose_base_cmd(state.project().with_compose_files(path))
    logs.follow(logs.logs_cmd(base, [APP_SERVICE], follow=True, tail="20"))
    info("stopped following; the stack keeps running in development mode")


def register(app: typer.Typer) -> None:
    app.command()(dev)
