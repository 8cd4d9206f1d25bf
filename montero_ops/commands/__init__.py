"""One module per command (or small group). Each exposes `register(app: typer.Typer)`.

Command modules parse, call one service function, and render. They must not import
python-on-whales or docker at module level (`montero --help` stays fast).

The root group loads them lazily: `COMMANDS` says which module defines each top-level
command, so `montero ps` imports and builds only `status` (docs/benchmarks.md, figure 2).
tests/unit/test_help.py checks that this table matches what the modules register.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# Top-level command -> module, in the order of `montero --help`.
COMMANDS: dict[str, str] = {
    "build": "lifecycle", "up": "lifecycle", "down": "lifecycle", "start": "lifecycle",
    "stop": "lifecycle", "restart": "lifecycle", "scale": "lifecycle",
    "ps": "status", "status": "status", "health": "status",
    "logs": "logs",
    "exec": "exec", "shell": "exec", "test": "exec",
    "migrate": "migrate",
    "env": "env",
    "config": "config",
    "dev": "dev",
    "inspect": "inspect",
    "prune": "prune",
    "backup": "backup", "restore": "backup", "backups": "backup",
    "setup": "setup", "images": "setup",
    "version": "version",
    "tls": "tls",
    "scan": "scan",
    "deploy": "deploy",
    "releases": "releases",
    "rollback": "releases",
    "update": "update",
    "swarm": "swarm",
    "doctor": "doctor",
    "stats": "stats",
    "schedule": "schedule",
    "replication": "replication",
}


def load() -> list[ModuleType]:
    """Every command module once, in the order of `montero --help` (the modules are COMMANDS' values)."""
    return [importlib.import_module(f"montero_ops.commands.{name}") for name in dict.fromkeys(COMMANDS.values())]
