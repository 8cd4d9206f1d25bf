"""`montero replication status`, and the replica side of `montero restore --to-time`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

if TYPE_CHECKING:
    from montero_ops.services.replication import ReplicationStatus

replication_app = typer.Typer(
    help="Continuous SQLite replication with Litestream (the replicate profile).\n\n"
         "Example: montero replication status --json",
    no_args_is_help=True,
)


@replication_app.command("status")
def status_cmd(ctx: typer.Context, json: JsonOption = False) -> None:
    """Replica position, lag in seconds and the last error; exit 1 when replication is failing.

    Example: montero replication status --json
    """
    from montero_ops.output import print_json
    from montero_ops.services import replication
    from montero_ops.services.backups import sqlite_db

    state = get_state(ctx)
    project = state.project()
    result = replication.status(project, state.docker(), sqlite_db.database_path(project))
    if json:
        print_json(result.to_dict())
    else:
        _render(result)
    if result.enabled and not result.ok:
        raise typer.Exit(ExitCode.FAILED)


def _render(result: ReplicationStatus) -> None:
    if not result.enabled:
        typer.echo("replication is off: start it with `montero up --profile replicate`")
        return
    replica = result.replica or {}
    where = f"s3://{replica.get('bucket')}/{replica.get('path')} at {replica.get('endpoint')}" if replica else "?"
    typer.echo(f"service     {result.service}")
    typer.echo(f"replica     {where}")
    position = f"txid {result.replica_txid}" + (f" ({result.replica_time})" if result.replica_time else "") \
        if result.replica_txid else "unknown"
    typer.echo(f"position    {position}; local txid {result.local_txid or 'unknown'}")
    lag = f"{result.lag_seconds:.1f} s" if result.lag_seconds is not None else "unknown"
    typer.echo(f"lag         {lag}" + (f" (last complete sync {result.last_sync_at})" if result.last_sync_at else ""))
    typer.echo(f"last error  {result.last_error or 'none'}")
    for problem in result.problems:
        typer.echo(f"problem: {problem}", err=True)


def fetch_for_restore(ctx: typer.Context, to_time: str, backups_dir: Path) -> Path:
    """`restore --to-time`: the replica's database at that time as a verified local backup folder."""
    from montero_ops.output import info
    from montero_ops.services import replication
    from montero_ops.services.backups import sqlite_db
    from montero_ops.services.stack import prepare_dirs

    project = get_state(ctx).project()
    when = replication.parse_time(to_time)
    path = replication.fetch_point_in_time(project, sqlite_db.database_path(project), when, backups_dir,
                                           progress=info)
    # A lost host has no ./data: create it as `montero up` does (uid 1000), so the swap has a folder.
    prepare_dirs(project)
    return path


def register(app: typer.Typer) -> None:
    app.add_typer(replication_app, name="replication")
