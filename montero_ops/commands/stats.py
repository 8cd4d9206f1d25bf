"""stats: per container resources, per replica traffic (from /metrics) and Redis memory, live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.output import size
from montero_ops.state import get_state

if TYPE_CHECKING:
    from rich.table import Table

    from montero_ops.services.stats import Snapshot, Traffic


def _num(value: float | None, suffix: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def _traffic_cells(t: Traffic | None) -> list[str]:
    if t is None:
        return ["", "", "", "", ""]
    error = None if t.error_rate is None else t.error_rate * 100
    return [
        _num(t.requests_per_s),
        _num(t.p50_ms, "ms"),
        _num(t.p99_ms, "ms"),
        _num(error, "%", 2),
        _num(t.rate_limited_per_s),
    ]


def render(snapshot: Snapshot) -> Table:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title_justify="left")
    columns = (
        "SERVICE", "NAME", "STATE", "HEALTH", "RESTARTS", "CPU", "MEM / LIMIT", "NET RX/TX", "BLOCK R/W",
        "REQ/S", "P50", "P99", "5XX", "429/S",
    )
    for column in columns:
        table.add_column(column, no_wrap=True)
    colors = {"healthy": "green", "starting": "yellow", "unhealthy": "red"}
    for c in snapshot.containers:
        health = c.health or "-"
        table.add_row(
            c.service, c.name, c.state, f"[{colors.get(health, 'white')}]{health}[/]", str(c.restarts),
            _num(c.cpu_percent, "%"), f"{size(c.memory_bytes, sep='')} / {size(c.memory_limit_bytes, sep='')}",
            f"{size(c.net_rx_bytes, sep='')} / {size(c.net_tx_bytes, sep='')}",
            f"{size(c.block_read_bytes, sep='')} / {size(c.block_write_bytes, sep='')}",
            *_traffic_cells(c.traffic),
        )
    if snapshot.app is not None:
        table.add_row("[bold]app (sum)[/]", "", "", "", "", "", "", "", "", *_traffic_cells(snapshot.app))
    r = snapshot.redis
    if r is not None:
        if r.error:
            caption = f"redis: {r.error}"
        else:
            percent = "" if r.memory_percent is None else f" ({r.memory_percent:.1f}%)"
            caption = (
                f"redis: memory {size(r.used_memory_bytes, sep='')} of {size(r.maxmemory_bytes, sep='') if r.maxmemory_bytes else 'no cap'}"
                f"{percent}, evicted keys {r.evicted_keys}, clients {r.connected_clients}"
            )
        table.caption = caption
        table.caption_justify = "left"
    return table


def stats(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Print one snapshot and exit.")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between refreshes (0.5 or more).")] = 2.0,
    json: JsonOption = False,
) -> None:
    """Live CPU, memory, I/O, restarts and health per container; req/s, p50/p99, 5xx and 429 per app
    replica (from its /metrics); Redis memory, evictions and clients. Ctrl-C exits (130).

    Example: montero stats --once --json
    """
    from montero_ops.errors import UsageError
    from montero_ops.output import console, print_json
    from montero_ops.services.stats import StatsReader

    if not interval >= 0.5:
        raise UsageError(f"--interval {interval:g} is too short", hint="use 0.5 seconds or more (default 2)")
    state = get_state(ctx)
    docker = state.docker()  # exit 4 outside a project, 3 when Docker is down, before any work
    reader = StatsReader(state.project().name, client_factory=lambda: docker.sdk)
    window = min(interval, 1.0)
    if json:
        print_json(reader.snapshot(window).to_dict())
        return
    out = console()
    if once:
        out.print(render(reader.snapshot(window)))
        return
    if not out.is_terminal:
        while True:  # a plain table per interval: pipes and logs get whole tables, no redraws
            out.print(render(reader.snapshot(interval)))
            out.print()
            out.file.flush()
    from rich.live import Live

    snapshot = reader.snapshot(window)
    with Live(render(snapshot), console=out, auto_refresh=False, transient=False) as live:
        while True:
            snapshot = reader.snapshot(interval)
            live.update(render(snapshot), refresh=True)


def register(app: typer.Typer) -> None:
    app.command()(stats)
