"""`montero deploy`: ship a new release on this host (build, gate, zero-downtime switch, receipt).

The Swarm verbs moved to `montero swarm …`; `montero deploy swarm|status|rollback|remove`
still work (hidden) and print one line naming the new spelling.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer

from montero_ops.commands._options import JsonOption, YesOption
from montero_ops.commands.swarm import OLD_SPELLING, VERBS
from montero_ops.state import get_state

deploy_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)


@deploy_app.callback()
def deploy_cmd(
    ctx: typer.Context,
    yes: YesOption = False,
    json: JsonOption = False,
    allow_breaking: Annotated[bool, typer.Option(
        "--allow-breaking",
        help="Deploy a migration that drops or renames what the running release uses, through a short maintenance "
             "window (every replica stops, the migration runs, the new release starts).",
    )] = False,
    timeout: Annotated[int, typer.Option("--timeout", help="Seconds to wait for each new replica's health.")] = 180,
) -> None:
    """Build a new release, back up and test its migrations, switch the replicas one at a time, prove it.

    Behind nginx (production profile) the switch drops no request; a replica failing its health check, or any error seen by montero's own probe, returns every replica to the previous release (exit 1, with the reason). The receipt (duration, probes sent/failed, p50/p99, backup, revision) is printed and kept: `montero releases`. The Swarm verbs are under `montero swarm`.

    Example: montero deploy --yes
    """
    if ctx.invoked_subcommand is not None:
        return
    from montero_ops.commands._common import confirm_or_refuse
    from montero_ops.commands.releases import render_failure, render_outcome
    from montero_ops.output import info, print_json
    from montero_ops.services import release_deploy as rd
    from montero_ops.services import stack

    state = get_state(ctx)
    engine = state.engine()
    project = stack.current_variant(engine, state.project())
    rd.running_image(engine, project)  # a clear "not running" before any build
    if rd.needs_production(engine, project) and not confirm_or_refuse(
        "No nginx runs: a zero-downtime deploy needs the production profile "
        "(`montero up --profile production`). Deploy with a short gap per replica?",
        "deploy with a short gap (zero-downtime needs the production profile)", yes,
    ):
        raise typer.Exit(1)
    try:
        outcome = rd.deploy(state.client(project), engine, project, allow_breaking=allow_breaking,
                            timeout=timeout, progress=info)
    except rd.DeployFailed as exc:
        render_failure(exc.release, json)
        raise
    if json:
        print_json(outcome.to_dict())
        return
    render_outcome("deployed", outcome)


def _old_spelling(old: str, new: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from montero_ops.output import warn

        warn(f"`montero deploy {old}` is now `montero swarm {new}`")
        return function(*args, **kwargs)

    return wrapper


for _old, _new in OLD_SPELLING.items():
    deploy_app.command(_old, hidden=True)(_old_spelling(_old, _new, VERBS[_new]))


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
