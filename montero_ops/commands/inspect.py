"""inspect: docker inspect for the stack's containers, secrets redacted."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.state import get_state


def inspect(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Argument(help="Service (default: every container).")] = None,
    network: Annotated[bool, typer.Option("--network", help="Only networks and published ports.")] = False,
    env: Annotated[bool, typer.Option("--env", help="Only the environment (secrets redacted).")] = False,
) -> None:
    """Print `docker inspect` JSON for the stack's containers, env secrets redacted.

    Example: montero inspect app --env
    """
    from montero_ops.errors import UsageError
    from montero_ops.output import print_json
    from montero_ops.services.inspection import inspect as run_inspect

    if network and env:
        raise UsageError("--network and --env cannot be combined")
    state = get_state(ctx)
    print_json(run_inspect(state.docker(), state.project().name, service, network=network, env=env))


def register(app: typer.Typer) -> None:
    app.command()(inspect)
