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
        from python_on_whales import DockerClient

        client = DockerClient()
    result = versions(client)
    if json:
        print_json(result.to_dict())
        return
    for label, value in (
        ("montero", result.montero),
        ("Docker client", result.docker_client),
        ("Docker server", result.docker_server),
        ("Compose", result.compose),
    ):
        typer.echo(f"{label + ':':15} {value or 'not available'}")


def register(app: typer.Typer) -> None:
    app.command()(version)
