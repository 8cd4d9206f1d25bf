"""`montero swarm deploy | status | rollback | remove`: the stack on Docker Swarm.

The same verbs were `montero deploy swarm|status|rollback|remove`; commands/deploy.py keeps
those spellings working with a one-line notice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from montero_ops.commands._options import JsonOption, YesOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

if TYPE_CHECKING:
    from montero_ops.services.deploy import StackState

swarm_app = typer.Typer(
    help="Run the stack on Docker Swarm: deploy, status, rollback, remove.\n\nExample: montero swarm deploy --stack montero",
    no_args_is_help=True,
)

StackOption = Annotated[str, typer.Option("--stack", "-s", help="Stack name.")]
TimeoutOption = Annotated[int, typer.Option("--timeout", help="Seconds to wait until every service converges.")]


def _client(ctx: typer.Context):  # type: ignore[no-untyped-def]
    return get_state(ctx).client()


def _render(state: StackState, json: bool) -> None:
    from montero_ops.output import console, print_json

    if json:
        print_json(state.to_dict())
        return
    from rich.table import Table

    out = console()
    if state.nodes:
        nodes = Table(title="nodes")
        for column in ("node", "id", "role", "state", "availability", "tasks"):
            nodes.add_column(column)
        for n in state.nodes:
            colour = "green" if n.state == "ready" and n.availability == "active" else "red"
            role = f"{n.role} (leader)" if n.leader else n.role
            nodes.add_row(n.name, n.id[:12], role, f"[{colour}]{n.state}[/{colour}]", n.availability, str(n.tasks))
        out.print(nodes)
    table = Table(title=f"stack {state.stack}")
    for column in ("service", "replicas", "tasks per node", "image", "update"):
        table.add_column(column)
    for s in state.services:
        colour = "green" if s.converged else "yellow"
        update = " ".join(x for x in (s.update_state, s.update_message) if x) or "-"
        spread = ", ".join(f"{node} {count}" for node, count in s.tasks_per_node.items()) or "-"
        table.add_row(s.name, f"[{colour}]{s.running}/{s.desired}[/{colour}]", spread, s.image, update)
    out.print(table)


def swarm_cmd(
    ctx: typer.Context,
    stack: StackOption = "montero",
    registry: Annotated[str | None, typer.Option(
        "--registry", help="Push the app image to this registry first (needed for more than one node).")] = None,
    image: Annotated[str | None, typer.Option("--image", help="App image to deploy (default: MONTERO_APP_IMAGE).")]
    = None,
    profile: Annotated[list[str] | None, typer.Option(
        "--profile", help="postgres: PostgreSQL instead of SQLite (docker/stack.postgres.yml).")] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once the stack is submitted.")] = False,
    timeout: TimeoutOption = 300,
    json: JsonOption = False,
) -> None:
    """Deploy (or update, rolling and start-first) the stack on this swarm with docker/stack.yml.

    On several nodes: --registry is needed, SQLite needs a node labelled montero.sqlite=true,
    and Redis, PostgreSQL and nginx go where their labels say (docs/production.md).

    Example: montero swarm deploy --registry 10.0.0.1:5000 --profile postgres
    """
    from montero_ops.errors import UsageError
    from montero_ops.output import info, success
    from montero_ops.services.deploy import deploy

    unknown = [p for p in profile or [] if p != "postgres"]
    if unknown:
        raise UsageError(f"unknown swarm profile {', '.join(unknown)}", hint="the stack knows --profile postgres")
    state = get_state(ctx)
    result = deploy(_client(ctx), state.project(), stack=stack, registry=registry, image=image,
                    timeout=timeout, wait=not no_wait, progress=info, postgres=bool(profile))
    success(f"stack {stack} deployed" + ("" if no_wait else ": every service runs its replicas, healthy"))
    _render(result, json)


def status_cmd(ctx: typer.Context, stack: StackOption = "montero", json: JsonOption = False) -> None:
    """Show the swarm's nodes and each service of the stack: replicas, tasks per node, image, update.

    Example: montero swarm status --json
    """
    from montero_ops.services.deploy import status

    _render(status(_client(ctx), stack), json)


def rollback_cmd(
    ctx: typer.Context,
    stack: StackOption = "montero",
    service: Annotated[str, typer.Option("--service", help="Service to roll back.")] = "app",
    timeout: TimeoutOption = 300,
    json: JsonOption = False,
) -> None:
    """Return a service (default app) to its previous version, replica by replica.

    Example: montero swarm rollback --stack montero
    """
    from montero_ops.output import info, success
    from montero_ops.services.deploy import rollback

    result = rollback(_client(ctx), stack, service=service, timeout=timeout, progress=info)
    success(f"{stack}_{service} rolled back")
    _render(result, json)


def remove_cmd(ctx: typer.Context, stack: StackOption = "montero", yes: YesOption = False) -> None:
    """Remove the stack's services and networks (named volumes stay).

    Example: montero swarm remove --stack montero --yes
    """
    from montero_ops.commands._common import confirm_or_refuse
    from montero_ops.output import success
    from montero_ops.services.deploy import remove

    if not confirm_or_refuse(f"Remove stack {stack}?", f"remove every service of stack {stack}", yes):
        raise typer.Exit(ExitCode.FAILED)
    remove(_client(ctx), stack)
    success(f"stack {stack} removed (volumes kept)")


# verb -> function; commands/deploy.py registers the old `deploy <verb>` spellings from this too.
VERBS: dict[str, Callable[..., Any]] = {
    "deploy": swarm_cmd, "status": status_cmd, "rollback": rollback_cmd, "remove": remove_cmd,
}
OLD_SPELLING = {"swarm": "deploy", "status": "status", "rollback": "rollback", "remove": "remove"}

for _verb, _function in VERBS.items():
    swarm_app.command(_verb)(_function)


def register(app: typer.Typer) -> None:
    app.add_typer(swarm_app, name="swarm")
