"""`montero schedule install|status|remove|run`: unattended backups, prune, drills (and other jobs)."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

schedule_app = typer.Typer(
    help="Run backups (and other jobs) on their own, and record every run.\n\n"
    "Example: montero schedule install --backup 03:15 --drill sun",
    no_args_is_help=True,
)


@schedule_app.command("install")
def install_cmd(
    ctx: typer.Context,
    backup: Annotated[str | None, typer.Option("--backup", help="Daily time of backup (+ push when offsite is set), HH:MM.")] = None,
    prune: Annotated[str | None, typer.Option("--prune", help="Daily time of retention, HH:MM.")] = None,
    drill: Annotated[str | None, typer.Option("--drill", help="Weekday of the restore drill (mon..sun), at 05:15.")] = None,
    job: Annotated[list[str] | None, typer.Option("--job", help="Other job as NAME=HH:MM or NAME=WEEKDAY@HH:MM (repeatable).")] = None,
    cron: Annotated[bool, typer.Option("--cron", help="Use cron even where systemd runs.")] = False,
    json: JsonOption = False,
) -> None:
    """Install cron entries (or systemd timers where systemd runs) for this project's jobs.

    Reinstalling replaces the previous entries. Jobs not named run at their default time.

    Example: montero schedule install --backup 03:15 --drill sun
    """
    from montero_ops.errors import UsageError
    from montero_ops.output import print_json, success
    from montero_ops.services import schedule as sched

    times: dict[str, sched.When | None] = {}
    if backup:
        times["backup"] = sched.When(*sched.parse_time(backup))
    if prune:
        times["prune"] = sched.When(*sched.parse_time(prune))
    if drill:
        times["drill"] = sched.When(5, 15, weekday=sched.parse_weekday(drill))
    for item in job or []:
        name, _, spec = item.partition("=")
        if not spec:
            raise UsageError(f"--job {item!r} has no time", hint="use NAME=HH:MM or NAME=WEEKDAY@HH:MM")
        day, _, hm = spec.rpartition("@")
        times[name] = sched.When(*sched.parse_time(hm), weekday=sched.parse_weekday(day) if day else None)
    project = get_state(ctx).project()
    result = sched.install(project, sched.plan(project, times), backend="cron" if cron else None)
    if json:
        print_json(result.to_dict())
        return
    for e in result.entries:
        typer.echo(f"{e.job:10} {e.when.describe():12} {sched.JOBS[e.job].description}")
    success(f"installed {len(result.entries)} job(s) with {result.backend}; see `montero schedule status`")


@schedule_app.command("status")
def status_cmd(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show each scheduled job, its last run and whether it is late or failing; exit 1 when one is.

    Example: montero schedule status --json
    """
    from montero_ops.output import print_json
    from montero_ops.services import schedule as sched

    backend, jobs = sched.status(get_state(ctx).project())
    if json:
        print_json({"backend": backend, "jobs": [j.to_dict() for j in jobs]})
    elif not jobs:
        typer.echo("no schedule installed (montero schedule install)", err=True)
    else:
        for j in jobs:
            last = f"last {j.last.finished_at} exit {j.last.exit_code}" if j.last else "never run"
            typer.echo(f"{'FAIL' if j.problem else 'ok  '} {j.job:10} {j.schedule or '-':12} {last}"
                       + (f": {j.problem}" if j.problem else ""))
    if any(j.problem for j in jobs):
        raise typer.Exit(ExitCode.FAILED)


@schedule_app.command("remove")
def remove_cmd(ctx: typer.Context) -> None:
    """Remove this project's cron entries / systemd timers (run records are kept).

    Example: montero schedule remove
    """
    from montero_ops.output import success
    from montero_ops.services import schedule as sched

    gone = sched.remove(get_state(ctx).project())
    success(f"removed {', '.join(gone)}" if gone else "nothing was scheduled")


@schedule_app.command("run")
def run_cmd(
    ctx: typer.Context,
    job: Annotated[str, typer.Argument(help="The job to run now, as the scheduler does.")],
    json: JsonOption = False,
) -> None:
    """Run one job now and record its outcome (what cron/systemd call); exit code is the job's.

    Example: montero schedule run backup
    """
    from montero_ops.output import print_json
    from montero_ops.services import schedule as sched

    record = sched.run_job(get_state(ctx).project(), job)
    if json:
        print_json(record.to_dict())
    else:
        typer.echo(f"{'ok' if record.ok else 'FAILED'} {record.job} exit {record.exit_code} "
                   f"in {record.seconds:.1f} s: {record.summary}", err=not record.ok)
    if not record.ok:
        raise typer.Exit(ExitCode.FAILED)


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")
