"""Flask CLI commands: `flask --app wsgi create-admin`, `flask --app wsgi prune`."""

from __future__ import annotations

import click
from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from .database import get_db
from .mailqueue import MailQueue
from .models import User
from .security import hash_password, password_problem
from .validation import check_email


def register_commands(app: Flask) -> None:
    @app.cli.command("create-admin")
    @click.option("--email", prompt=True, help="Login e-mail of the admin account.")
    @click.option(
        "--password",
        prompt=True,
        hide_input=True,
        confirmation_prompt=True,
        envvar="MONTERO_ADMIN_PASSWORD",
        help="Password (or MONTERO_ADMIN_PASSWORD; prompted if absent).",
    )
    @click.option("--name", "full_name", default="", help="Full name shown in the audit trail.")
    @click.option("--update", is_flag=True, help="If the account exists, make it admin and set this password.")
    def create_admin(email: str, password: str, full_name: str, update: bool) -> None:
        """Create an admin account (or promote one with --update).

        Example: flask --app wsgi create-admin --email admin@example.com
        """
        email = email.strip().lower()
        if problem := check_email(email):
            raise click.UsageError(f"--email {problem}")
        if problem := password_problem(password):
            raise click.UsageError(f"--password {problem}")
        try:
            _save_admin(email, password, full_name, update)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise click.ClickException(
                f"database error: {reason} (is DATABASE_URL right and `alembic upgrade head` done?)"
            ) from None
        click.echo(f"admin account ready: {email}")

    @app.cli.command("prune")
    def prune() -> None:
        """Delete login sessions and reset tokens dead for over a day (the app also does it hourly).

        Example: flask --app wsgi prune
        """
        queue: MailQueue = app.extensions["montero_mail_queue"]
        try:
            counts = queue.prune()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            raise click.ClickException(f"database error: {reason}") from None
        click.echo(f"pruned {counts['sessions']} sessions and {counts['reset_tokens']} reset tokens")


def _save_admin(email: str, password: str, full_name: str, update: bool) -> None:
    with get_db().open_session(write=True) as session:
        user = session.scalar(select(User).where(User.email == email))
        if user is not None and not update:
            raise click.ClickException(f"{email} already exists; pass --update to make it admin and reset its password")
        if user is None:
            user = User(email=email, full_name=full_name)
            session.add(user)
        user.role = "admin"
        user.is_active = True
        user.password_hash = hash_password(password)
        if full_name:
            user.full_name = full_name
        session.commit()
