"""Helpers shared by command modules: confirmation, interactivity, failure evidence."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from montero_ops.errors import ExitCode, UsageError

if TYPE_CHECKING:
    from montero_ops.services.stack import FailureReport
    from montero_ops.state import State


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


@contextlib.contextmanager
def locked(ctx: Any, command: str) -> Iterator[None]:
    """Run the block under the project lock (services/lock.py); a restore interrupted before
    (its journal is left) is named first, with its leftovers removed and the command that fixes it."""
    from montero_ops.output import info
    from montero_ops.services.lock import Holder, project_lock
    from montero_ops.state import get_state

    project = get_state(ctx).project()

    def waiting(holder: Holder | None) -> None:
        who = f"the {holder.command} (pid {holder.pid})" if holder else "another montero command"
        info(f"waiting for {who} to finish")

    with project_lock(project, command, on_wait=waiting):
        report_interrupted_restore(project)
        yield


def report_interrupted_restore(project: Any) -> None:
    from rich.markup import escape

    from montero_ops.output import console
    from montero_ops.services.backups.journal import find_interrupted

    found = find_interrupted(project)
    if found is None:
        return
    err = console(stderr=True)
    for line in [*found.lines, f"fix: {found.fix}"]:
        err.print(f"[yellow]![/yellow] {escape(line)}", soft_wrap=True)


def print_failure(report: FailureReport) -> None:
    """The failing service's last log lines and health probes, on stderr."""
    from rich.markup import escape

    from montero_ops.output import console

    err = console(stderr=True)
    err.print(f"[bold]Last {len(report.logs)} log lines of {escape(report.service)}:[/bold]")
    for line in report.logs or ["(no output)"]:
        err.print(f"  {escape(line)}", soft_wrap=True)
    if report.probes:
        err.print(f"[bold]Health probes of {escape(report.container)}:[/bold]")
        for probe in report.probes:
            err.print(f"  {escape(probe)}", soft_wrap=True)


def start_and_wait(state: State, project_profiles: list[str], build: bool, scales: dict[str, int],
                   wait: bool, timeout: int, extra_files: tuple[Path, ...] = ()) -> None:
    """`up` and `dev`: services/up.py starts and waits; this prints the evidence and the outcome."""
    from montero_ops.output import info, spinner, success
    from montero_ops.services import up

    started = up.start_and_wait(state, project_profiles, build, scales, wait, timeout, extra_files,
                                on_failure=print_failure, waiting=spinner)
    if started.states is None:
        success("stack started (not waiting for health)")
        return
    success(f"stack is up: {len(started.states)} containers, {started.healthy} healthy")
    if started.verdict is not None and started.verdict.note:
        info(started.verdict.note)
    if started.address:
        info(f"open {started.address}")
