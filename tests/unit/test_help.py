"""Every registered command (sub-groups included) has a one-line summary and an example."""

from __future__ import annotations

from typing import Any, Iterator

import pytest
import typer

from montero_ops.cli import app


def walk(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, command in sorted(group.commands.items()):
        yield path + (name,), command
        if hasattr(command, "commands"):
            yield from walk(command, path + (name,))


ROOT = typer.main.get_command(app)
COMMANDS = list(walk(ROOT))


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
