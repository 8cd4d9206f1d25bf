"""Every registered command (sub-groups included) has a one-line summary and an example;
the lazy command table and the stored root help match what the modules register."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from montero_ops import commands, roothelp
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


def stored() -> tuple[dict[str, str], str]:
    with open(roothelp.STORED, encoding="utf-8") as f:
        return roothelp.parse(f.read())


def require_stored_versions() -> dict[str, str]:
    """The stored help's header; skips when Typer/Rich here are not the ones it was made with
    (then montero renders the help live: test_a_stale_stored_help_is_not_used)."""
    fields, _ = stored()
    assert set(fields) == {*roothelp.PACKAGES, "width"}, f"{roothelp.STORED}: no header line"
    installed = {name: roothelp.installed_version(name) for name in roothelp.PACKAGES}
    if any(fields[name] != installed[name] for name in roothelp.PACKAGES):
        pytest.skip(f"stored help made with {fields}, installed {installed}: it is rendered live here")
    return fields


def test_the_stored_root_help_is_current() -> None:
    fields = require_stored_versions()
    assert render_root_help(int(fields["width"])) == stored()[1], (
        "the root help changed: run `python -m montero_ops.cli --write-root-help`"
    )


def run_main(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """montero_ops.main() (the console entry point) in a fresh interpreter, stdout a pipe;
    stderr lists the Typer/Click/Rich modules it imported."""
    code = f"import sys\nsys.argv = ['montero', *{args!r}]\nimport montero_ops\ntry:\n montero_ops.main()\nfinally:\n " \
           "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click', 'rich')), file=sys.stderr)"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                               **(env or {})})


def test_the_fast_help_path_prints_the_stored_help() -> None:
    """`montero --help` through the console entry point (no Typer) prints what Typer would."""
    require_stored_versions()
    done = run_main(["--help"])
    assert done.stderr.strip() == "[]", "the fast path imported Typer, Click or Rich"
    assert "Usage: montero [OPTIONS] COMMAND [ARGS]..." in done.stdout
    assert done.stdout == render_root_help()
    assert run_main(["-h"], {"COLUMNS": "80"}).stdout == done.stdout


def test_another_width_renders_live() -> None:
    """COLUMNS=100: Typer draws 100 columns, so the stored 80-column text must not be printed."""
    done = run_main(["--help"], {"COLUMNS": "100"})
    assert "typer" in done.stderr, "the stored help was printed at another width"
    assert done.stdout == render_root_help(100)
    assert max(len(line) for line in done.stdout.splitlines()) == 100


def test_a_stale_stored_help_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fields, text = stored()
    assert roothelp.stored_help() in (text, None)
    monkeypatch.setattr(roothelp, "live_width", lambda: int(fields["width"]))
    for name in roothelp.PACKAGES:
        installed = roothelp.installed_version(name)
        assert installed, f"cannot read {name}'s version from its dist-info folder"
        versions = {n: roothelp.installed_version(n) or "" for n in roothelp.PACKAGES}
        current = tmp_path / "current.txt"
        current.write_text(roothelp.header(versions, int(fields["width"])) + "\n" + text, encoding="utf-8")
        assert roothelp.stored_help(str(current)) == text
        stale = tmp_path / f"stale-{name}.txt"
        stale.write_text(roothelp.header({**versions, name: "0.0.1"}, int(fields["width"])) + "\n" + text,
                         encoding="utf-8")
        assert roothelp.stored_help(str(stale)) is None, f"a help made with another {name} was used"
    other_width = tmp_path / "wide.txt"
    other_width.write_text(roothelp.header(versions, 120) + "\n" + text, encoding="utf-8")
    assert roothelp.stored_help(str(other_width)) is None
    headerless = tmp_path / "old.txt"
    headerless.write_text(text, encoding="utf-8")
    assert roothelp.stored_help(str(headerless)) is None


def test_the_width_is_decided_like_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdout is not a terminal under pytest: 80 columns unless COLUMNS / TERMINAL_WIDTH say otherwise."""
    from rich.console import Console

    for var in ("COLUMNS", "TERMINAL_WIDTH", "FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TTY_COMPATIBLE",
                "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(roothelp, "_isatty", lambda fd: False)
    monkeypatch.setattr(roothelp.os, "get_terminal_size", lambda fd: (_ for _ in ()).throw(OSError()))
    assert roothelp.live_width() == 80
    monkeypatch.setenv("COLUMNS", "132")
    assert roothelp.live_width() == 132 == Console(file=io.StringIO()).width
    monkeypatch.setenv("TERMINAL_WIDTH", "90")
    assert roothelp.live_width() == 90
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert roothelp.live_width() is None, "forced colours: the plain stored text is not what Typer prints"
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.setattr(roothelp, "_isatty", lambda fd: True)
    assert roothelp.live_width() is None, "a terminal gets Typer's coloured render"


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
