"""prune: show docker's disk usage, confirm, then prune."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.commands._common import confirm_or_refuse
from montero_ops.commands._options import JsonOption, YesOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state


def prune(
    ctx: typer.Context,
    all: Annotated[bool, typer.Option("--all", "-a", help="Also remove every unused image, not just dangling.")] = False,
    volumes: Annotated[bool, typer.Option("--volumes", help="Also remove unused volumes (data!).")] = False,
    yes: YesOption = False,
    json: JsonOption = False,
) -> None:
    """Show Docker's disk usage, then remove stopped containers, unused networks, images and cache.

    Acts on the whole Docker host, not only this stack.

    Example: montero prune --all --yes
    """
    from montero_ops.output import console, print_json, size, success
    from montero_ops.services.prune import disk_usage
    from montero_ops.services.prune import prune as run_prune

    client = get_state(ctx).client()
    usage = disk_usage(client)
    if json:
        print_json([u.to_dict() for u in usage])
    else:
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"):
            table.add_column(column)
        for u in usage:
            table.add_row(u.kind, str(u.total), str(u.active), size(u.size), size(u.reclaimable))
        console(stderr=True).print(table)
    what = "prune stopped containers, unused networks, " + ("all unused" if all else "dangling") + " images, build cache"
    what += " and unused volumes" if volumes else ""
    if not confirm_or_refuse(f"{what[0].upper()}{what[1:]}?", what, yes):
        raise typer.Exit(ExitCode.FAILED)
    run_prune(client, all=all, volumes=volumes)
    success("pruned")


def register(app: typer.Typer) -> None:
    app.command()(prune)
