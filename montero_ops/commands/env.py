"""env init / check / show: the project's .env file."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

env_app = typer.Typer(
    name="env",
    help="The project's .env file: create, check, show.\n\nExample: montero env init",
    no_args_is_help=True,
)


@env_app.command()
def init(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing .env.")] = False,
    offsite: Annotated[str | None, typer.Option(
        "--offsite", help="Offsite restic repository (path, sftp:…, s3:…); on an existing .env only adds the offsite settings.",
        show_default=False)] = None,
) -> None:
    """Create .env from .env.example with a generated SECRET_KEY, REDIS_PASSWORD and offsite password (mode 0600).

    The offsite (restic) password is said once: keep a copy away from this machine.

    Example: montero env init --offsite s3:https://s3.example.com/montero-backups
    """
    from montero_ops.output import success, warn
    from montero_ops.services import envfile

    result = envfile.init(get_state(ctx).project(), force=force, offsite_repository=offsite)
    if result.created:
        success(f"created {result.path} with a new SECRET_KEY, REDIS_PASSWORD and {envfile.OFFSITE_PASSWORD} (mode 600)")
    else:
        success(f"added the offsite settings to {result.path}")
    if result.offsite_password_generated:
        # Said once, here, where the password is made: nothing else can bring it back.
        warn(f"{envfile.OFFSITE_PASSWORD} in {result.path.name} encrypts the offsite backups: copy it somewhere "
             "safe away from this machine (a password manager). Losing it loses the offsite backups; "
             "nobody can recover them without it.")


@env_app.command()
def check(ctx: typer.Context, json: JsonOption = False) -> None:
    """Check required variables and SECRET_KEY strength; exit 1 on any error.

    Example: montero env check
    """
    from montero_ops.output import console, print_json
    from montero_ops.services import envfile

    findings = envfile.check(get_state(ctx).project())
    errors = [f for f in findings if f.level == "error"]
    if json:
        print_json({"ok": not errors, "findings": [f.to_dict() for f in findings]})
    else:
        out = console()
        for f in findings:
            out.print(("[red]✘[/red] " if f.level == "error" else "[yellow]![/yellow] ") + f.message)
        if not errors:
            out.print("[green]✔[/green] .env looks good")
    if errors:
        raise typer.Exit(ExitCode.FAILED)


@env_app.command()
def show(ctx: typer.Context, json: JsonOption = False) -> None:
    """Show .env values with secrets redacted.

    Example: montero env show --json
    """
    from montero_ops.output import print_json
    from montero_ops.services import envfile

    values = envfile.show(get_state(ctx).project())
    if json:
        print_json(values)
        return
    for name, value in values.items():
        typer.echo(f"{name}={value}")


def register(app: typer.Typer) -> None:
    app.add_typer(env_app)
