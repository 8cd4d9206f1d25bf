"""`montero releases` (the history with its receipts) and `montero rollback`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from montero_ops.commands._options import JsonOption, TargetStackOption, YesOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

if TYPE_CHECKING:
    from montero_ops.services.release_deploy import Outcome
    from montero_ops.services.releases import Receipt, Release
    from montero_ops.services.targets import Target


def target_of(ctx: typer.Context, stack: str | None) -> Target:
    """Where the release verbs act (services/targets.py): --stack, else how the stack runs now."""
    from montero_ops.errors import DockerUnavailable
    from montero_ops.services import stack as stacks
    from montero_ops.services import targets

    if stack:
        return targets.Target("swarm", stack)
    state = get_state(ctx)
    project = state.project()
    try:
        engine = state.docker()
    except DockerUnavailable:
        return targets.HOST  # `releases` still lists this host's history
    variant = stacks.current_variant(engine, project)
    return targets.choose(project, None, lambda: targets.host_runs(engine, variant), lambda: state.client())


def receipt_line(receipt: Receipt | None) -> str:
    if receipt is None:
        return "-"
    latency = (f", p50 {receipt.p50_ms:g} ms, p99 {receipt.p99_ms:g} ms"
               if receipt.p50_ms is not None and receipt.p99_ms is not None else "")
    revision = (f", revision {receipt.revision_before or '-'} -> {receipt.revision_after or '-'}"
                if receipt.revision_before or receipt.revision_after else "")
    backup = f", backup {receipt.backup}" if receipt.backup else ""
    return (f"{receipt.duration_s:g}s, {receipt.replicas_replaced} replica(s) replaced, probes "
            f"{receipt.probes_sent} sent / {receipt.probes_failed} failed"
            + (f" ({receipt.reconnects} keep-alive reconnects)" if receipt.reconnects else "")
            + latency + backup + revision)


def render_outcome(verb: str, outcome: Outcome) -> None:
    from montero_ops.output import console, info, success

    release = outcome.release
    if release.kind == "rollback":
        success(f"{verb} {release.image} (rolled back from {outcome.previous})")
    else:
        success(f"{verb} {release.id} ({release.image})" + (f", was {outcome.previous}" if outcome.previous else ""))
    for note in outcome.notes:
        info(note)
    console().print(f"receipt: {receipt_line(release.receipt)}", markup=False, soft_wrap=True)


def render_failure(release: Release, json: bool) -> None:
    """The "why it failed" bundle on stderr (or the record as JSON on stdout), before the red line."""
    from montero_ops.output import console, print_json

    if json:
        print_json({"release": release.to_dict()})
        return
    bundle = release.failure or {}
    err = console(stderr=True)
    if bundle.get("replica"):
        err.print(f"Last log lines of {bundle['replica']}:", markup=False)
        for line in bundle.get("logs") or ["(no output)"]:
            err.print(f"  {line}", markup=False, soft_wrap=True)
        err.print("Health probes:", markup=False)
        for line in bundle.get("health") or ["(none ran)"]:
            err.print(f"  {line}", markup=False, soft_wrap=True)
    if bundle.get("probe_first_error"):
        err.print(f"Probe's first error: {bundle['probe_first_error']}", markup=False)
    err.print(f"receipt: {receipt_line(release.receipt)}", markup=False, soft_wrap=True)


def _listed_target(ctx: typer.Context, stack: str | None) -> Target:
    """Whose history `releases` shows: without --stack and without any swarm stack's history (and
    no MONTERO_STACK), this host's, without asking Docker; else as `montero deploy` chooses."""
    import os

    from montero_ops.services import targets

    root = get_state(ctx).project().root
    if not stack and not os.environ.get("MONTERO_STACK") and not any(
            (root / ".montero").glob("releases-swarm-*.json")):
        return targets.HOST
    return target_of(ctx, stack)


def releases(ctx: typer.Context, json: JsonOption = False, stack: TargetStackOption = None) -> None:
    """List the recorded releases, newest first, marking the current one, with each deploy's receipt.

    This host and each swarm stack keep their own history; the target is chosen as `montero deploy` chooses it.

    Example: montero releases --json
    """
    from montero_ops.output import console, print_json
    from montero_ops.services.targets import history as history_of

    target = _listed_target(ctx, stack)
    history = history_of(get_state(ctx).project(), target)
    if json:
        print_json({"target": target.to_dict(), "current": history.current,
                    "releases": [r.to_dict() for r in reversed(history.releases)]})
        return
    if not history.releases:
        where = "" if target.kind == "host" else f" on {target.describe()}"
        console().print(f"no releases yet{where}: `montero deploy` records the first one", markup=False)
        return
    from rich.table import Table

    table = Table(title="releases" if target.kind == "host" else f"releases of {target.describe()}")
    for column in ("", "release", "kind", "outcome", "when", "by", "revision", "receipt"):
        table.add_column(column, overflow="fold")
    for r in reversed(history.releases):
        mark = "*" if r.id == history.current else ""
        outcome = r.outcome + (f": {r.reason}" if r.reason and r.outcome != "ok" else "")
        table.add_row(mark, r.id, r.kind, outcome, r.created_at, r.by, r.revision or "-", receipt_line(r.receipt))
    console().print(table)


def rollback(
    ctx: typer.Context,
    release: Annotated[str | None, typer.Argument(help="Release id (default: the previous one).",
                                                  show_default=False)] = None,
    with_data: Annotated[bool, typer.Option(
        "--with-data", help="Also restore the backup taken before the current release's migrations.")] = False,
    yes: YesOption = False,
    json: JsonOption = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for each new replica's health.")] = 180,
    stack_name: TargetStackOption = None,
) -> None:
    """Go back to the previous (or named) release with the same zero-downtime switch.

    --with-data also restores the database backed up before the current release's migrations: every change written since then is lost (a safety backup of it is taken first). On a swarm stack the rollback is the same start-first service update, to the earlier release's image (--with-data is for one host).

    Example: montero rollback --yes
    """
    from montero_ops.commands._common import confirm_or_refuse, locked
    from montero_ops.output import info, print_json
    from montero_ops.services import release_deploy as rd
    from montero_ops.services import stack
    from montero_ops.services.releases import load_history

    state = get_state(ctx)
    where = target_of(ctx, stack_name)
    if where.kind == "swarm":
        from montero_ops.services import release_swarm

        try:
            with locked(ctx, "rollback"):
                outcome = release_swarm.rollback(state.client(), state.project(), where.stack or "", release,
                                                 with_data=with_data, timeout=timeout, progress=info)
        except rd.DeployFailed as exc:
            render_failure(exc.release, json)
            raise
        if json:
            print_json({**outcome.to_dict(), "target": where.to_dict()})
            return
        render_outcome(f"rolled back {where.describe()}: now running", outcome)
        return
    engine = state.docker()
    project = stack.current_variant(engine, state.project())
    history = load_history(project)
    current = history.current_release()
    target = history.get(release) if release else history.previous()
    what = f"switch the app from {current.id if current else '?'} to {target.id if target else '?'}"
    restore = None
    if with_data and current and current.receipt and current.receipt.backup:
        backup = current.receipt.backup
        what += (f" and restore the database from backup {backup}: every change written since "
                 f"{current.created_at} is lost (a safety backup is taken first)")

        def restore(backup_id: str) -> None:
            from montero_ops.services.backups import plan_restore, run_restore
            from montero_ops.services.backups.manifest import find_backup
            from montero_ops.services.backups.stack import ComposeStack

            folder = find_backup(project.backups_dir, backup_id)
            plan = plan_restore(project, "sqlite", folder, project.backups_dir)
            run_restore(plan, project, ComposeStack(project, state.client(project), docker=engine),
                        project.backups_dir, progress=info)
    if (with_data or rd.needs_production(engine, project)) and target and current and target.id != current.id:
        question = what[0].upper() + what[1:] + "?"
        if not confirm_or_refuse(question, what, yes):
            raise typer.Exit(ExitCode.FAILED)
    try:
        with locked(ctx, "rollback"):
            outcome = rd.rollback(state.client(project), engine, project, release, with_data=with_data,
                                  timeout=timeout, progress=info, restore=restore)
    except rd.DeployFailed as exc:
        render_failure(exc.release, json)
        raise
    if json:
        print_json({**outcome.to_dict(), "target": where.to_dict()})
        return
    render_outcome("rolled back: now running", outcome)


def register(app: typer.Typer) -> None:
    app.command()(releases)
    app.command()(rollback)
