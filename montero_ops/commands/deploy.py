"""`montero deploy`: ship a new release on this host (build, gate, zero-downtime switch, receipt).

The Swarm verbs moved to `montero swarm …`; `montero deploy swarm|status|rollback|remove`
still work (hidden) and print one line naming the new spelling.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import typer

from montero_ops.commands._options import JsonOption, TargetStackOption, YesOption
from montero_ops.commands.swarm import OLD_SPELLING, VERBS
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

deploy_app = typer.Typer(invoke_without_command=True, no_args_is_help=False)

AllowBreakingOption = Annotated[bool, typer.Option(
    "--allow-breaking",
    help="Deploy a migration that drops or renames what the running release uses, through a short maintenance "
         "window (every replica stops, the migration runs, the new release starts).",
)]
DeployTimeoutOption = Annotated[int, typer.Option("--timeout", help="Seconds to wait for each new replica's health.")]
RegistryOption = Annotated[str | None, typer.Option(
    "--registry", help="On a swarm of several nodes: push the release to this registry and deploy it by digest.")]


def run_deploy(ctx: typer.Context, yes: bool, json: bool, allow_breaking: bool, timeout: int, command: str = "deploy",
               prepare: Callable[[], None] | None = None, after_build: Callable[[str], None] | None = None,
               notes: list[str] | None = None, stack_name: str | None = None, registry: str | None = None) -> None:
    """`deploy` and `update` alike: under the project lock, on the target the stack runs on."""
    from montero_ops.commands._common import confirm_or_refuse, locked
    from montero_ops.commands.releases import render_failure, render_outcome, target_of
    from montero_ops.errors import UsageError
    from montero_ops.output import info, print_json
    from montero_ops.services import release_deploy as rd
    from montero_ops.services import stack

    state = get_state(ctx)
    target = target_of(ctx, stack_name)
    if target.kind == "swarm":
        if allow_breaking:
            raise UsageError("--allow-breaking is for one host: a swarm has no migration gate to override",
                             hint="on a swarm each new task migrates as it starts: keep migrations additive")
        from montero_ops.services import release_swarm

        with locked(ctx, command):
            if prepare:
                prepare()
            try:
                outcome = release_swarm.deploy(state.client(), state.project(), target.stack or "", registry=registry,
                                               timeout=timeout, progress=info, after_build=after_build)
            except rd.DeployFailed as exc:
                render_failure(exc.release, json)
                raise
        outcome.notes[:0] = notes or []
        if json:
            print_json({**outcome.to_dict(), "target": target.to_dict()})
            return
        render_outcome(f"deployed to {target.describe()}:", outcome)
        return
    if registry:
        raise UsageError("--registry is for a swarm stack", hint="pass --stack NAME, or leave --registry out")
    engine = state.docker()
    project = stack.current_variant(engine, state.project())
    rd.running_image(engine, project)  # a clear "not running" before any build
    if rd.needs_production(engine, project) and not confirm_or_refuse(
        "No nginx runs: a zero-downtime deploy needs the production profile "
        "(`montero up --profile production`). Deploy with a short gap per replica?",
        f"{command} with a short gap (zero-downtime needs the production profile)", yes,
    ):
        raise typer.Exit(ExitCode.FAILED)
    with locked(ctx, command):
        if prepare:
            prepare()
        try:
            outcome = rd.deploy(state.client(project), engine, project, allow_breaking=allow_breaking,
                                timeout=timeout, progress=info, after_build=after_build)
        except rd.DeployFailed as exc:
            render_failure(exc.release, json)
            raise
    outcome.notes[:0] = notes or []
    if json:
        print_json({**outcome.to_dict(), "target": target.to_dict()})
        return
    render_outcome("deployed", outcome)


@deploy_app.callback()
def deploy_cmd(
    ctx: typer.Context,
    yes: YesOption = False,
    json: JsonOption = False,
    allow_breaking: AllowBreakingOption = False,
    timeout: DeployTimeoutOption = 180,
    stack: TargetStackOption = None,
    registry: RegistryOption = None,
) -> None:
    """Build a new release, back up and test its migrations, switch the replicas one at a time, prove it.

    Behind nginx (production profile) the switch drops no request; a replica failing its health check, or any error seen by montero's own probe, returns every replica to the previous release (exit 1, with the reason). The receipt (duration, probes sent/failed, p50/p99, backup, revision) is printed and kept: `montero releases`. On a swarm stack (--stack, or MONTERO_STACK when no replica runs on this host) the release is a start-first `docker service update` of the stack's app service, which the swarm rolls back when a new task fails. The other Swarm verbs are under `montero swarm`.

    Example: montero deploy --yes
    """
    if ctx.invoked_subcommand is not None:
        return
    run_deploy(ctx, yes, json, allow_breaking, timeout, stack_name=stack, registry=registry)


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
