"""Helpers shared by command modules: confirmation, interactivity, failure evidence."""

from __future__ import annotations

import shlex
import sys
from typing import NoReturn

import typer

from montero_ops.errors import ExitCode, UsageError


def interactive() -> bool:
    return sys.stdin.isatty()


def declined() -> NoReturn:
    """The one way a confirmation answered "no" ends: a line on stderr and exit 1 (README)."""
    typer.echo("aborted: nothing was changed", err=True)
    raise typer.Exit(ExitCode.DECLINED)


def confirm_or_refuse(question: str, what: str, yes: bool) -> bool:
    """True to go ahead. Without --yes: ask on a terminal, refuse (exit 2) elsewhere;
    a "no" ends the command through declined() (exit 1), so every command answers alike.

    Refusing says what would have been deleted, so a script's log explains itself.
    """
    if yes:
        return True
    if not interactive():
        raise UsageError(f"refusing to {what} without confirmation", hint="pass --yes to confirm")
    if not typer.confirm(question, default=False, err=True):
        declined()
    return True


def print_verbose(enabled: bool, cmd: list[str]) -> None:
    if enabled:
        sys.stderr.write("$ " + shlex.join(cmd) + "\n")
