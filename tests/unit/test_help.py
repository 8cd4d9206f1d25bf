"""Every registered command (sub-groups included) has a one-line summary and an example;
the lazy command table and the stored root help match what the modules register."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer

from montero_ops import commands
from montero_ops.cli import app, render_root_help


def walk(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(group.commands.items()):
        yield path + (name,), command
        if hasattr(command, "commands"):
            yield from walk(command, path + (name,))


def full_tree() -> Any:
    """The root group with every command loaded (the CLI loads them one by one on use)."""
    root = typer.main.get_command(app)
    ctx = root.make_context("montero", ["version"], resilient_parsing=True)
    for name in root.list_commands(ctx):
        assert root.get_command(ctx, name) is not None, f"commands.COMMANDS names `{name}`, no module defines it"
    return root


ROOT = full_tree()
COMMANDS = list(walk(ROOT))


def test_the_lazy_command_table_matches_the_modules() -> None:
    registered: dict[str, str] = {}
    for module in commands.load():
        holder = typer.Typer()
        module.register(holder)
        for name in typer.main.get_group(holder).commands:
            registered[name] = module.__name__.rsplit(".", 1)[1]
    assert registered == commands.COMMANDS, "update montero_ops/commands/__init__.py: COMMANDS"


def test_the_stored_root_help_is_current() -> None:
    from montero_ops._roothelp import ROOT_HELP

    assert render_root_help().removesuffix("\n") == ROOT_HELP, (
        "the root help changed: run `python -m montero_ops.cli --write-root-help`"
    )


def test_the_fast_help_path_prints_the_stored_help(tmp_path: Any) -> None:
    """`montero --help` through the console entry point (no Typer) prints what Typer would."""
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys; sys.argv = ['montero', '--help']; import montero_ops; montero_ops.main(); " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')), file=sys.stderr)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    assert done.stderr.strip() == "[]", "the fast path imported Typer, Click or Rich"
    assert "Usage: montero [OPTIONS] COMMAND [ARGS]..." in done.stdout
    assert done.stdout == render_root_help()


def test_the_tree_has_every_documented_command() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    expected = {"build", "up", "down", "restart", "stop", "start", "ps", "status", "logs", "scale", "exec", "shell",
                "test", "health", "config", "dev", "inspect", "prune", "version",
                "migrate current", "migrate history", "migrate revision", "migrate upgrade", "migrate downgrade",
                "env init", "env check", "env show"}
    assert expected <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_help_and_example(path: tuple[str, ...], command: Any) -> None:
    text = command.help or ""
    summary = text.strip().splitlines()[0] if text.strip() else ""
    assert summary, f"`montero {' '.join(path)}` has no help"
    assert len(summary) <= 120, f"`montero {' '.join(path)}`: one-line summary too long"
    examples = [line for line in text.splitlines() if line.strip().startswith("Example:")]
    assert examples and "montero " in examples[0], f"`montero {' '.join(path)}` has no `Example: … montero …` line"


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_help_renders(cli, path: tuple[str, ...]) -> None:
    result = cli(*path, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.stdout
