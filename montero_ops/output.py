"""Rendering: data to stdout, progress and errors to stderr. Rich is imported lazily.

Rich honours NO_COLOR and falls back to plain text when the stream is not a terminal.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

_consoles: dict[bool, Console] = {}


def size(n: float | None, sep: str = " ") -> str:
    """A byte count in binary units, the one formatter of sizes montero computes itself:
    "512 B", "1.5 KiB" … "2.0 TiB"; "-" when unknown. (Docker's own SI strings, e.g.
    `system df`'s "1.2GB", are shown as docker prints them.)"""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f}{sep}B" if unit == "B" else f"{value:.1f}{sep}{unit}"
        value /= 1024
    raise AssertionError("unreachable")


def console(stderr: bool = False) -> Console:
    # Not cached across stream swaps (CliRunner replaces sys.stdout/sys.stderr per call).
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    cached = _consoles.get(stderr)
    if cached is None or cached.file is not stream:
        cached = Console(file=stream, stderr=stderr, highlight=False, soft_wrap=False)
        _consoles[stderr] = cached
    return cached


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str, sort_keys=False) + "\n")
    sys.stdout.flush()


def verdict_mark(ok: bool) -> str:
    """✔ in green or ✘ in red, without importing Rich (17 ms: a sixth of `montero health`,
    docs/benchmarks.md figure 3). Plain when stdout is no terminal or NO_COLOR is set,
    as Rich would do."""
    import os

    mark = "✔" if ok else "✘"
    if os.environ.get("NO_COLOR") or not sys.stdout.isatty():
        return mark
    return f"\x1b[{32 if ok else 31}m{mark}\x1b[0m"


def info(message: str) -> None:
    """A progress/status line on stderr."""
    console(stderr=True).print(message)


def success(message: str) -> None:
    console(stderr=True).print(f"[green]✔[/green] {message}")


def warn(message: str) -> None:
    console(stderr=True).print(f"[yellow]![/yellow] {message}")


def error_line(message: str, hint: str | None = None) -> None:
    from rich.markup import escape

    err = console(stderr=True)
    err.print(f"[bold red]Error:[/bold red] {escape(message)}", soft_wrap=True)
    if hint:
        err.print(f"  [dim]Fix:[/dim] {escape(hint)}", soft_wrap=True)


@contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner on stderr while something slow runs (plain line when not a terminal)."""
    err = console(stderr=True)
    if not err.is_terminal:
        err.print(message)
        yield
        return
    with err.status(message):
        yield
