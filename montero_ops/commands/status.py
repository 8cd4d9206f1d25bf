"""ps (alias status) and health: read-only, straight from the Engine API (fast)."""

from __future__ import annotations

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state


def ps(ctx: typer.Context, json: JsonOption = False) -> None:
    """List the stack's containers with state, health and restart count.

    Example: montero ps --json
    """
    from montero_ops.output import console, info, print_json
    from montero_ops.services.status import container_statuses

    state = get_state(ctx)
    rows = container_statuses(state.engine(), state.project().name)
    if json:
        print_json([c.to_dict() for c in rows])
        return
    if not rows:
        info("no containers: the stack is not running (start it with `montero up`)")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("SERVICE", "NAME", "STATE", "HEALTH", "RESTARTS", "PORTS"):
        table.add_column(column, no_wrap=column != "PORTS")
    colors = {"healthy": "green", "running": "green", "starting": "yellow", "unhealthy": "red"}
    for c in rows:
        health = c.health or "-"
        state_text = c.state if c.exit_code is None else f"{c.state} ({c.exit_code})"
        table.add_row(
            c.service, c.name, state_text, f"[{colors.get(health, 'white')}]{health}[/]",
            str(c.restarts), ", ".join(c.ports),
        )
    console().print(table)


def status(ctx: typer.Context, json: JsonOption = False) -> None:
    """Alias of `ps`: containers with state, health and restart count.

    Example: montero status
    """
    ps(ctx, json)


def health(ctx: typer.Context, json: JsonOption = False) -> None:
    """Every service's health; exit 1 when any is unhealthy, stopped or missing.

    Example: montero health --json
    """
    from montero_ops.output import print_json, verdict_mark
    from montero_ops.services.status import container_statuses, services_health, start_defined_services

    state = get_state(ctx)
    project = state.project()
    engine = state.engine()
    expected = start_defined_services(project)  # runs while the engine answers
    result = services_health(container_statuses(engine, project.name), expected())
    ok = all(s.ok for s in result) and bool(result)
    if json:
        print_json({"ok": ok, "services": [s.to_dict() for s in result]})
    else:
        for s in result:
            count = f" ({s.containers} containers)" if s.containers > 1 else ""
            typer.echo(f"{verdict_mark(s.ok)} {s.service:<12} {s.status}{count}")
    if not ok:
        raise typer.Exit(ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    app.command()(ps)
    app.command()(status)
    app.command()(health)
