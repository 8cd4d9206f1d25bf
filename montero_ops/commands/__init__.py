"""One module per command (or small group). Each exposes `register(app: typer.Typer)`.

Command modules parse, call one service function, and render. They must not import
python-on-whales or docker at module level (`montero --help` stays fast).
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Order here is the order in `montero --help`.
MODULES = [
    "lifecycle",
    "status",
    "logs",
    "exec",
    "migrate",
    "env",
    "config",
    "dev",
    "inspect",
    "prune",
    "backup",
    "setup",
    "version",
    "tls",
    "scan",
    "deploy",
    "doctor",
]


def load() -> list[ModuleType]:
    return [importlib.import_module(f"montero_ops.commands.{name}") for name in MODULES]
