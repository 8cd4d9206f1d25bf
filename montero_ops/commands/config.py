"""config: the resolved compose configuration, secrets redacted."""

from __future__ import annotations

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.state import get_state


def config(ctx: typer.Context, json: JsonOption = False) -> None:
    """Print the resolved `docker compose config` with secrets redacted.

    Example: montero config --json
    """
    from montero_ops.output import print_json
    from montero_ops.services.compose_config import config_json, config_text

    client = get_state(ctx).client()
    if json:
        print_json(config_json(client))
    else:
        typer.echo(config_text(client), nl=False)


def register(app: typer.Typer) -> None:
    app.command()(config)
