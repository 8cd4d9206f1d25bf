"""montero doctor: every troubleshooting check, one line each, with the exact fix."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from montero_ops.commands._options import JsonOption, YesOption
from montero_ops.errors import ExitCode
from montero_ops.state import get_state

if TYPE_CHECKING:
    from montero_ops.services.doctor import Finding, Repair, Report

STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
DETAIL_LINES = 50


def doctor(
    ctx: typer.Context,
    json: JsonOption = False,
    fix: Annotated[bool, typer.Option("--fix", help="Apply safe, reversible fixes; ask before any other.")] = False,
    yes: YesOption = False,
    production: Annotated[bool, typer.Option("--production", help="Add the production security checklist.")] = False,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, help="Seconds each Docker call may take; a hung check becomes a finding."),
    ] = 8.0,
    swarm: Annotated[bool, typer.Option(
        "--swarm", help="Check the swarm instead (nodes, services, tasks), through DOCKER_HOST / --context.")] = False,
    stack: Annotated[str, typer.Option("--stack", "-s", help="With --swarm: the stack to check.")] = "montero",
) -> None:
    """Diagnose the stack: Docker, ports, disk, configuration, health, data; exit 1 when a check fails.

    Example: montero doctor --production
    """
    from montero_ops.output import print_json
    from montero_ops.services.doctor import apply_repairs, run_doctor

    if swarm:
        from montero_ops.services.doctor import Report
        from montero_ops.services.doctor.swarm import check_swarm

        report = Report(check_swarm(get_state(ctx).client(), stack))
        if json:
            print_json(report.to_list())
        else:
            _render(report)
        if not report.ok:
            raise typer.Exit(ExitCode.FAILED)
        return
    project = get_state(ctx).project()
    report = run_doctor(project, production=production, timeout=timeout)
    if fix:
        if not json:
            _render(report)
        outcomes = apply_repairs(report, lambda f, r: _confirm(f, r, yes))
        _render_outcomes(outcomes)
        if outcomes:
            report = run_doctor(project, production=production, timeout=timeout)
            if not json:
                typer.echo("\nAfter the fixes:")
                _render(report)
        elif not json:
            typer.echo("Nothing doctor can fix by itself.", err=True)
        if json:
            print_json(report.to_list())
    elif json:
        print_json(report.to_list())
    else:
        _render(report)
    if not report.ok:
        raise typer.Exit(ExitCode.FAILED)


def _confirm(finding: Finding, repair: Repair, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        typer.echo(
            f"! {finding.id}: not applied without confirmation: {repair.description} (rerun with --yes)", err=True
        )
        return False
    return typer.confirm(f"{finding.id}: {repair.description}?", default=False, err=True)


def _render(report: Report) -> None:
    from rich.markup import escape

    from montero_ops.output import console
    from montero_ops.services.doctor.finding import SYMBOLS

    out = console()
    width = max((len(f.id) for f in report.findings), default=10)
    for f in report.findings:
        color = STYLE[f.status.value]
        out.print(f"[{color}]{SYMBOLS[f.status]}[/{color}] {f.id:<{width}}  {escape(f.message)}", soft_wrap=True)
        if f.fix and f.status.value in ("warn", "fail"):
            out.print(f"    [dim]fix:[/dim] {escape(f.fix)}", soft_wrap=True)
        if f.detail and f.status.value in ("warn", "fail"):
            for line in f.detail[-DETAIL_LINES:]:
                out.print(f"      [dim]{escape(line)}[/dim]", soft_wrap=True)
    out.print(f"\n{report.summary()}")


def _render_outcomes(outcomes: list[tuple[Finding, str]]) -> None:
    for finding, outcome in outcomes:
        typer.echo(f"fix {finding.id}: {outcome}", err=True)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
