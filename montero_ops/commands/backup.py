"""`montero backup`, `montero backups list|verify|prune`, `montero restore`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from montero_ops.commands._options import JsonOption, YesOption
from montero_ops.errors import ExitCode, MonteroError, UsageError
from montero_ops.state import get_state

if TYPE_CHECKING:
    from montero_ops.services.backups.prune import Policy
    from montero_ops.services.backups.stack import Stack


class What(str, Enum):
    all = "all"
    sqlite = "sqlite"
    redis = "redis"
    postgres = "postgres"  # profile postgres: montero_ops/services/backups/postgres.py


OffsiteOption = Annotated[bool, typer.Option("--offsite", help="Work on the offsite restic repository.")]
DirOption = Annotated[
    Path | None, typer.Option("--dir", help="Backups folder (default: $MONTERO_BACKUP_DIR or ./backups).")
]


def _backups_dir(ctx: typer.Context, folder: Path | None) -> Path:
    return (folder or get_state(ctx).project().backups_dir).expanduser().resolve()


def _stack(ctx: typer.Context, what: str) -> Stack:
    from montero_ops.output import warn
    from montero_ops.services.backups.stack import open_stack

    return open_stack(get_state(ctx), what, ctx.info_name or "backup", warn)


SwarmStackOption = Annotated[str | None, typer.Option(
    "--stack", help="postgres only: the swarm stack whose PostgreSQL to use (through DOCKER_HOST / --context).")]


def _swarm_postgres_only(what: What, stack: str | None) -> None:
    if stack and what is not What.postgres:
        raise UsageError(f"--stack works with postgres only, not {what.value}",
                         hint=f"e.g. `montero backup postgres --stack {stack}`")


def _refuse_sqlite_on_postgres(ctx: typer.Context, what: What) -> None:
    from montero_ops.services.backups.stack import refuse_sqlite_on_postgres

    refuse_sqlite_on_postgres(get_state(ctx), what.value, ctx.info_name or "backup")


def _confirm_or_refuse(yes: bool, question: str, refusal: str) -> None:
    if yes:
        return
    from montero_ops.commands._common import declined, interactive

    if not interactive():
        raise UsageError(refusal, hint="run it in a terminal to confirm, or pass --yes")
    if not typer.confirm(question, default=False, err=True):

        declined()  # the same exit 1 as down, prune, swarm remove


def backup(
    ctx: typer.Context,
    what: Annotated[What, typer.Argument(help="What to back up.")] = What.all,
    compress: Annotated[bool, typer.Option("--compress", help="gzip the database copy.")] = False,
    folder: DirOption = None,
    push: Annotated[bool, typer.Option("--push", help="Then send it to the offsite repository.")] = False,
    swarm_stack: SwarmStackOption = None,
    json: JsonOption = False,
) -> None:
    """Back up SQLite and/or Redis while the app keeps running; verified before it counts.

    Example: montero backup sqlite --compress
    """
    from montero_ops.commands._common import locked
    from montero_ops.output import info, print_json, success
    from montero_ops.services.backups import create_backup
    from montero_ops.services.backups.stack import NoStack

    project = get_state(ctx).project()
    _swarm_postgres_only(what, swarm_stack)
    if not swarm_stack:
        _refuse_sqlite_on_postgres(ctx, what)
    with locked(ctx, "backup"):
        try:
            if what is What.postgres:
                from montero_ops.services.backups import postgres as backup_postgres

                swarm = get_state(ctx).plain_client() if swarm_stack else None
                path, manifest = backup_postgres.create(project, _backups_dir(ctx, folder), progress=info,
                                                        stack=swarm_stack, swarm=swarm)
            else:
                # A SQLite backup reads the bind-mounted file directly: it needs no Docker at all.
                stack = NoStack() if what is What.sqlite else _stack(ctx, what.value)
                path, manifest = create_backup(project, what.value, stack, _backups_dir(ctx, folder),
                                               compress=compress, progress=info)
        except KeyboardInterrupt:
            # Say what it left (issue 22 point 3): the unfinished folder is already removed, and a
            # backup only reads the live data and stops nothing.
            raise MonteroError("backup interrupted (Ctrl-C): nothing was kept; the live data and the stack were "
                               "not touched", exit_code=ExitCode.INTERRUPTED) from None
    if push:
        from montero_ops.commands.offsite import push_folders

        success(f"backup {manifest.id} ({', '.join(manifest.contents)}), integrity ok")
        pushed = push_folders(project, [path], json=False)
        if json:
            print_json({**manifest.to_dict(), "offsite": pushed[0]})
        else:
            typer.echo(str(path))
        return
    if json:
        print_json(manifest.to_dict())
        return
    success(f"backup {manifest.id} ({', '.join(manifest.contents)}), integrity ok")
    typer.echo(str(path))


backups_app = typer.Typer(
    help="List, verify and prune backups.\n\nExample: montero backups verify --all", no_args_is_help=True
)


@backups_app.command("list")
def list_cmd(ctx: typer.Context, folder: DirOption = None, offsite: OffsiteOption = False,
             json: JsonOption = False) -> None:
    """List backups, oldest first.

    Example: montero backups list --json
    """
    if offsite:
        from montero_ops.commands.offsite import list_offsite

        return list_offsite(get_state(ctx).project(), json)
    from montero_ops.output import print_json
    from montero_ops.services.backups import list_backups
    from montero_ops.services.backups.manifest import partial_backups
    from montero_ops.services.drill import last_drill

    root = _backups_dir(ctx, folder)
    refs = list_backups(root)
    partials = partial_backups(root)
    if partials:
        # Left by backups that were killed (or one running now): not backups, but they take space.
        total = sum(p.size for p in partials) / 1024 / 1024
        typer.echo(f"{len(partials)} unfinished backup folder(s), {total:.1f} MB: "
                   f"{', '.join(p.path.name for p in partials)} (`montero backups prune` removes those older than an hour)",
                   err=True)
    rows: list[dict[str, Any]] = [
        {"id": r.id, "path": str(r.path), "created_at": r.manifest.created_at if r.manifest else None,
         "project": r.manifest.project if r.manifest else None,
         "contents": r.manifest.contents if r.manifest else [], "label": r.manifest.label if r.manifest else None,
         "size": sum(f.size for f in r.manifest.files) if r.manifest else None,
         "revision": (r.manifest.sqlite or {}).get("revision") if r.manifest else None, "problem": r.problem,
         "drill": _drill_summary(last_drill(root, r.id))}
        for r in refs
    ]
    if json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no backups", err=True)
        return
    _print_backups(rows)


def _print_backups(rows: list[dict[str, Any]]) -> None:
    """A borderless Rich table like `ps`, one backup a line, its id first (scripts cut it).

    No header row: stdout starts with the oldest backup's id, and each cell says what it is
    ("rev …", "drill ok …"). Drawn at its natural width, wider than the terminal if need be:
    ids and drill notes are never wrapped or cut."""
    from rich.table import Table
    from rich.text import Text

    from montero_ops.output import console, size

    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column("ID", no_wrap=True)
    table.add_column("SIZE", justify="right", no_wrap=True)
    table.add_column("REVISION", no_wrap=True)
    table.add_column("NOTES", no_wrap=True)
    for row in rows:
        notes = f"! {row['problem']}" if row["problem"] else ("(safety)" if row["label"] == "safety" else "")
        if row["drill"]:
            d = row["drill"]
            notes += (" " if notes else "") + f"drill {'ok' if d['ok'] else 'FAILED'} {d['at'][:10]}" + (
                f" ({d['recovery_seconds']:.0f} s)" if d["ok"] and d["recovery_seconds"] is not None else "")
        cells = (row["id"], size(row["size"]) if row["size"] is not None else "?", f"rev {row['revision'] or '-'}", notes)
        table.add_row(*(Text(cell) for cell in cells))  # Text: a problem's "[…]" is not markup
    out = console()
    needed = out.measure(table, options=out.options.update_width(100_000)).maximum
    if needed > out.width:  # print() clamps its width to the console's: draw on a wider one
        from rich.console import Console

        out = Console(file=out.file, width=needed, highlight=False, soft_wrap=False)
    out.print(table, crop=False)


def _drill_summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {"ok": bool(record.get("ok")), "at": str(record.get("started_at") or ""), "source": record.get("source"),
            "recovery_seconds": record.get("recovery_seconds")}


@backups_app.command("verify")
def verify_cmd(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(help="Backup ID or path (default: the newest).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Verify every backup.")] = False,
    folder: DirOption = None,
    offsite: OffsiteOption = False,
    json: JsonOption = False,
) -> None:
    """Check checksums, the database's integrity and the manifest; exit 1 when any backup fails.

    With --offsite: restic check of the repository, then the same checks on what comes back.

    Example: montero backups verify --all
    """
    if offsite:
        from montero_ops.commands.offsite import verify_offsite

        return verify_offsite(get_state(ctx).project(), ref, json)
    from montero_ops.output import print_json
    from montero_ops.services.backups import find_backup, list_backups, verify_backup

    root = _backups_dir(ctx, folder)
    project = get_state(ctx).project().name
    # Without an ID: the same backup `restore --latest` would use (this project's newest, no safety backup).
    paths = [r.path for r in list_backups(root)] if all_ else [find_backup(root, ref, latest=ref is None,
                                                                           project=project)]
    if not paths:
        # Nothing verified is not "all verified": the same answer as without --all.
        raise UsageError(f"no backups in {root}", hint="make one with `montero backup`")
    results = [verify_backup(p) for p in paths]
    if json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            typer.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.id}" + ("" if r.ok else f": {'; '.join(r.problems)}"))
    if not all(r.ok for r in results):
        raise typer.Exit(ExitCode.FAILED)


@backups_app.command("prune")
def prune_cmd(
    ctx: typer.Context,
    keep: Annotated[int | None, typer.Option("--keep", help="Keep the N newest backups.", show_default=False)] = None,
    keep_daily: Annotated[int | None, typer.Option("--keep-daily", help="Keep the newest backup of each of the last N days that have one.", show_default=False)] = None,
    keep_weekly: Annotated[int | None, typer.Option("--keep-weekly", help="… of each of the last N ISO weeks.", show_default=False)] = None,
    keep_monthly: Annotated[int | None, typer.Option("--keep-monthly", help="… of each of the last N months.", show_default=False)] = None,
    older_than: Annotated[str | None, typer.Option("--older-than", help="Only delete backups older than this (30d, 12h, 2w).")] = None,
    offsite: Annotated[bool, typer.Option("--offsite", help="Apply the same policy to the offsite repository too (restic forget --prune).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would be deleted; delete nothing.")] = False,
    yes: YesOption = False,
    folder: DirOption = None,
    json: JsonOption = False,
) -> None:
    """Delete old backups by a retention policy; never the newest verified one. Lists what goes.

    Rules unite (a backup any rule keeps stays); safety backups are not counted by any rule
    and go only when older than --older-than.

    Example: montero backups prune --keep-daily 7 --keep-weekly 4 --keep-monthly 6 --offsite --yes
    """
    from montero_ops.commands._common import locked
    from montero_ops.services.backups.prune import Policy

    with locked(ctx, "backups prune"):
        _prune(ctx, Policy(keep, keep_daily, keep_weekly, keep_monthly, older_than), offsite, dry_run, yes, folder, json)


def _prune(ctx: typer.Context, policy: Policy, offsite: bool, dry_run: bool, yes: bool, folder: Path | None,
           json: bool) -> None:
    from montero_ops.output import print_json, success
    from montero_ops.services.backups import apply_prune, plan_prune

    plan = plan_prune(_backups_dir(ctx, folder), policy=policy)
    cfg = forget_plan = None
    if offsite:
        from montero_ops.services import offsite as offsite_svc

        cfg = offsite_svc.load(get_state(ctx).project())
        # Planned first, so the question names everything that would go, here and there.
        forget_plan = offsite_svc.forget(cfg, get_state(ctx).project(), policy, dry_run=True)
    offsite_delete = forget_plan.delete if forget_plan else []
    result: dict[str, Any] = {**plan.to_dict(), "dry_run": dry_run,
                              "offsite": forget_plan.to_dict() if forget_plan else None}
    if not plan.delete and not plan.partials and not offsite_delete:
        typer.echo(f"nothing to prune ({policy.describe()})", err=True)
        if json:
            print_json(result)
        return
    verb = "would delete" if dry_run else "delete"
    for ref in plan.delete:
        typer.echo(f"{verb} {ref.id}", err=True)
    for partial in plan.partials:
        typer.echo(f"{verb} {partial.name} (unfinished backup)", err=True)
    for snap in offsite_delete:
        typer.echo(f"{verb} offsite {snap['backup']} (snapshot {snap['snapshot']})", err=True)
    if dry_run:
        if json:
            print_json(result)
        success(f"dry run: {len(plan.delete)} local" + (f" and {len(offsite_delete)} offsite" if offsite else "")
                + f" backup(s) would go; nothing was deleted ({policy.describe()})")
        return
    names = ", ".join([r.id for r in plan.delete] + [p.name for p in plan.partials]
                      + [f"offsite {s['backup']}" for s in offsite_delete])
    total = len(plan.delete) + len(offsite_delete)
    _confirm_or_refuse(yes, f"Delete {total} backup(s)?", f"prune would delete {names}; pass --yes")
    apply_prune(plan)
    if cfg is not None and offsite_delete:
        from montero_ops.services import offsite as offsite_svc

        assert forget_plan is not None
        offsite_svc.apply_forget(cfg, forget_plan)
    if json:
        print_json(result)
    success(f"deleted {len(plan.delete)} backup(s)" + (f" and {len(plan.partials)} unfinished" if plan.partials else "")
            + (f", {len(offsite_delete)} offsite (restic forget --prune)" if offsite else "")
            + f"; newest verified kept: {plan.protected or 'none'}")


def restore(
    ctx: typer.Context,
    what: Annotated[What, typer.Argument(help="What to restore (default: all, like `backup`).")] = What.all,
    ref: Annotated[str | None, typer.Argument(help="Backup ID or path.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Use the newest backup of this project.")] = False,
    from_offsite: Annotated[bool, typer.Option("--from-offsite", help="Fetch it from the offsite repository first.")] = False,
    to_time: Annotated[str | None, typer.Option(
        "--to-time", help="Restore the database as it was at TIME from the Litestream replica: RFC 3339, '10m ago' "
                          "or 'latest'.")] = None,
    yes: YesOption = False,
    folder: DirOption = None,
    swarm_stack: SwarmStackOption = None,
    json: JsonOption = False,
) -> None:
    """Restore a verified backup; a safety backup is taken first and put back on any failure.

    With --to-time, the database comes from the replica (replicate profile) at that moment,
    through the same checks, safety backup, swap and health-gated start.

    Example: montero restore all --latest --yes
    """
    from montero_ops.commands._common import locked

    if to_time is not None:
        if ref or latest or from_offsite:
            raise UsageError("--to-time restores from the replica: do not name a backup, --latest or --from-offsite",
                             hint="montero restore --to-time '10m ago' --yes")
        if what not in (What.all, What.sqlite):
            raise UsageError(f"--to-time restores the SQLite database, not {what.value} (the replica holds only it)",
                             hint="montero restore sqlite --to-time TIME")
        what = What.sqlite
        from montero_ops.services.replication import parse_time

        parse_time(to_time)  # a bad TIME is refused before the lock and before anything is fetched
    elif not ref and not latest:
        raise UsageError("say which backup: an ID, a path, or --latest", hint="see `montero backups list`")
    with locked(ctx, "restore"):
        _restore(ctx, what, ref, latest, from_offsite, yes, folder, json, to_time, swarm_stack)


def _restore(ctx: typer.Context, what: What, ref: str | None, latest: bool, from_offsite: bool, yes: bool,
             folder: Path | None, json: bool, to_time: str | None = None, swarm_stack: str | None = None) -> None:
    from montero_ops.output import info, print_json, success
    from montero_ops.services.backups import find_backup, plan_restore, run_restore

    project = get_state(ctx).project()
    _swarm_postgres_only(what, swarm_stack)
    if not swarm_stack:
        _refuse_sqlite_on_postgres(ctx, what)
    root = _backups_dir(ctx, folder)
    if to_time is not None:
        from montero_ops.commands.replication import fetch_for_restore as from_replica

        path = from_replica(ctx, to_time, root)
    elif from_offsite:
        from montero_ops.commands.offsite import fetch_for_restore

        path = fetch_for_restore(project, None if latest else ref, root)
    else:
        from montero_ops.services.backups.create import normalize_what
        from montero_ops.services.backups.manifest import is_regular, list_backups

        needs = normalize_what(what.value)
        path = find_backup(root, ref, latest=latest, project=project.name, needs=needs)
        newest = [r for r in list_backups(root) if is_regular(r, project.name)]
        if latest and newest and newest[-1].path != path:
            info(f"using {path.name}, the newest backup holding {'+'.join(needs)} "
                 f"(the newest, {newest[-1].id}, holds {'+'.join(newest[-1].manifest.contents if newest[-1].manifest else [])})")
    if what is What.postgres:
        from montero_ops.services.backups import postgres as backup_postgres

        _confirm_or_refuse(yes, f"Restore {path.name}, replacing the PostgreSQL database?",
                           f"restore would replace the PostgreSQL database with backup {path.name}; pass --yes")
        state = get_state(ctx)
        # The SDK client connects on first use: on a swarm (SWARM's reads) it is never used.
        safety = backup_postgres.restore(project, path, root, progress=info, stack=swarm_stack,
                                        docker=state.docker(check=False),
                                        swarm=state.plain_client() if swarm_stack else None)
        if json:
            print_json({"backup": path.name, "restored": ["postgres"], "safety_backup": safety.name})
            return
        success(f"restored postgres from {path.name} (safety backup: {safety.name})")
        return
    plan = plan_restore(project, what.value, path, root)
    overwrites = "; ".join(plan.overwrites) or "nothing (no current data)"
    _confirm_or_refuse(yes, f"Restore {path.name}, overwriting {overwrites}?",
                       f"restore would overwrite {overwrites} with backup {path.name}; pass --yes")
    result = run_restore(plan, project, _stack(ctx, what.value), root, progress=info)
    if json:
        print_json(result.to_dict())
        return
    for note in result.notes:
        info(note)
    success(f"restored {'+'.join(result.restored)} from {result.backup}"
            + (f" (safety backup: {result.safety_backup})" if result.safety_backup else ""))


def register(app: typer.Typer) -> None:
    app.command()(backup)
    from montero_ops.commands import offsite

    offsite.attach(backups_app)
    from montero_ops.commands import drill

    drill.attach(backups_app)
    app.add_typer(backups_app, name="backups")
    app.command()(restore)
