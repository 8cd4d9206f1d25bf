"""migrate: the five alembic commands, run in the app container (cwd /app)."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.state import get_state

migrate_app = typer.Typer(
    name="migrate",
    help="Database migrations (alembic in the app container).\n\nExample: montero migrate upgrade",
    no_args_is_help=True,
)


def _alembic(ctx: typer.Context, args: list[str]) -> None:
    from montero_ops.commands.exec import _tty, run_in
    from montero_ops.services.containers import APP_SERVICE, alembic_cmd

    run_in(get_state(ctx), APP_SERVICE, lambda client: alembic_cmd(client, args, _tty()))


@migrate_app.command()
def current(ctx: typer.Context) -> None:
    """Show the database's current revision.

    Example: montero migrate current
    """
    _alembic(ctx, ["current"])


@migrate_app.command()
def history(ctx: typer.Context) -> None:
    """List every migration, newest first.

    Example: montero migrate history
    """
    _alembic(ctx, ["history", "--verbose"])


@migrate_app.command()
def revision(
    ctx: typer.Context,
    message: Annotated[str, typer.Option("--message", "-m", help="What the migration does.")],
    autogenerate: Annotated[bool, typer.Option("--autogenerate", help="Diff the models against the database.")] = False,
) -> None:
    """Create a new migration file (in backend/migrations via the container).

    Example: montero migrate revision -m "add invoices" --autogenerate
    """
    _alembic(ctx, ["revision", "-m", message, *(["--autogenerate"] if autogenerate else [])])


@migrate_app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply migrations up to a revision (default head).

    Example: montero migrate upgrade head
    """
    _alembic(ctx, ["upgrade", revision])


# ignore_unknown_options lets `downgrade -1` pass -1 as the revision, not an option.
@migrate_app.command(context_settings={"ignore_unknown_options": True})
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision (-1 = one step back).")] = "-1",
) -> None:
    """Revert migrations down to a revision (default one step back).

    Example: montero migrate downgrade -1
    """
    _alembic(ctx, ["downgrade", revision])


def register(app: typer.Typer) -> None:
    app.add_typer(migrate_app)
