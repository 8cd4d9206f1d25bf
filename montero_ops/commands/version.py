from __future__ import annotations

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.state import get_state


def version(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show montero, Docker client/server and Compose versions.

    Example: montero version --json
    """
    from montero_ops.errors import ProjectNotFound
    from montero_ops.output import print_json
    from montero_ops.services.version import versions

    state = get_state(ctx)
    try:
        client = state.client(check=False)
    except ProjectNotFound:  # versions do not need a project
        client = state.plain_client()
    result = versions(client)
    if json:
        print_json(result.to_dict())
        return
    for label, value, missing in (
        ("montero", result.montero, "not available"),
        ("Docker client", result.docker_client, "not installed"),
        ("Docker server", result.docker_server, "not reachable" if result.docker_client else "not available"),
        ("Compose", result.compose, "not available"),
    ):
        typer.echo(f"{label + ':':15} {value or missing}")


def register(app: typer.Typer) -> None:
    app.command()(version)
