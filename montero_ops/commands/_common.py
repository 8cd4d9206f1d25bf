"""Helpers shared by command modules: confirmation, interactivity, failure evidence."""

from __future__ import annotations

import shlex
import sys

import typer

from montero_ops.errors import UsageError


def interactive() -> bool:
    return sys.stdin.isatty()


def confirm_or_refuse(question: str, what: str, yes: bool) -> bool:
    """True to go ahead. Without --yes: ask on a terminal, refuse (exit 2) elsewhere.

    Refusing says what would have been deleted, so a script's log explains itself.
    """
    if yes:
        return True
    if not interactive():
        raise UsageError(f"refusing to {what} without confirmation", hint="pass --yes to confirm")
    return typer.confirm(question, default=False, err=True)


def print_verbose(enabled: bool, cmd: list[str]) -> None:
    if enabled:
        sys.stderr.write("$ " + shlex.join(cmd) + "\n")
