"""The stored root help: `montero --help` without importing Typer, Click or Rich.

Building the command tree and importing Rich cost more than a whole `docker compose
version` (docs/benchmarks.md, figure 1), so montero_ops.main() prints the text Typer
rendered earlier, kept as package data in `root_help.txt`. Its first line records the
Typer and Rich versions and the width it was rendered with; the text is used only when
the installed versions and the width Typer would use now are the same, else Typer
renders it live. Regenerate it with `python -m montero_ops.cli --write-root-help`;
tests/unit/test_help.py fails when it no longer matches the live render.

Everything here must stay cheap: no importlib.metadata (~0.25 s), no Typer/Rich import.
The versions come from the `<name>-<version>.dist-info` folder beside each package.
"""

from __future__ import annotations

import os
import sys

STORED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "root_help.txt")  # not pathlib: cheap
WIDTH = 80  # the width it is rendered at (Rich's default when stdout is not a terminal)
PACKAGES = ("typer", "rich")
_HEADER = "montero root help:"
# Environment that changes how Typer/Rich draw the help (forced colours, a forced terminal).
_STYLE_ENV = ("FORCE_COLOR", "PY_COLORS", "GITHUB_ACTIONS", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS")


def header(versions: dict[str, str], width: int) -> str:
    """`montero root help: typer=0.25.1 rich=15.0.0 width=80`."""
    return " ".join([_HEADER, *(f"{name}={versions[name]}" for name in PACKAGES), f"width={width}"])


def parse(text: str) -> tuple[dict[str, str], str]:
    """The stored file's (header fields, help text); empty fields when the header is missing."""
    first, _, body = text.partition("\n")
    if not first.startswith(_HEADER):
        return {}, text
    fields = dict(item.split("=", 1) for item in first[len(_HEADER):].split() if "=" in item)
    return fields, body


def installed_version(package: str) -> str | None:
    """The version of `package` that `import package` would load, from the dist-info folder
    next to it on sys.path; None when that is not certain (no folder, or two of them)."""
    for entry in sys.path:
        folder = entry or os.getcwd()
        if not (os.path.isdir(os.path.join(folder, package)) or os.path.isfile(os.path.join(folder, package + ".py"))):
            continue
        try:
            names = os.listdir(folder)
        except OSError:
            return None
        prefix = package + "-"
        found = [n[len(prefix):-len(".dist-info")] for n in names
                 if n.lower().startswith(prefix) and n.endswith(".dist-info")]
        return found[0] if len(found) == 1 else None
    return None


def live_width() -> int | None:
    """The width Typer's Rich console would draw the help at now, decided the way Rich does
    when stdout is not a terminal; None when colours or styles make the output differ from
    the plain stored text anyway (a terminal, forced colours)."""
    env = os.environ
    if os.name == "nt" or any(env.get(name) for name in _STYLE_ENV):
        return None
    if _isatty(1):
        return None  # a terminal: Rich adds colour and bold, the stored text is plain
    terminal_width = env.get("TERMINAL_WIDTH")  # Typer's MAX_WIDTH
    if terminal_width:
        return int(terminal_width) if terminal_width.isdigit() else None
    columns = env.get("COLUMNS")
    if columns is not None and columns.isdigit():
        return int(columns) or None
    for fd in (0, 1, 2):  # Rich asks stdin, stdout, stderr in this order
        try:
            return os.get_terminal_size(fd).columns or WIDTH
        except (OSError, ValueError):
            continue
    return WIDTH


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def stored_help(path: str = STORED) -> str | None:
    """The stored root help if it is what Typer would print now, else None (render live)."""
    try:
        with open(path, encoding="utf-8") as stored:
            fields, text = parse(stored.read())
    except OSError:
        return None
    if not fields or fields.get("width") != str(live_width()):
        return None
    if any(fields.get(name) != installed_version(name) for name in PACKAGES):
        return None
    return text
