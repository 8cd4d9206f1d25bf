"""Candidate fix for `montero logs`, measured beside it in figure 10 (not part of montero).

The same Typer command, but the compose command line comes from the Project
(montero_ops.client.compose_base_cmd, standard library only) and the daemon check is
the Engine API ping, instead of a python-on-whales DockerClient (about 0.45 s to import)
plus `docker version` and `docker compose version`. Run: python bench/candidates/logs_fast.py
[montero options] logs app --since 10m
"""
import functools
import subprocess
import sys

import typer

import montero_ops.commands.logs as L
from montero_ops.client import compose_base_cmd
from montero_ops.state import get_state

original = L.logs


@functools.wraps(original)
def logs(ctx, services=None, follow=False, tail=None, since=None, until=None, timestamps=False):
    state = get_state(ctx)
    state.engine()  # the daemon check through the Engine API socket (ping)
    cmd = compose_base_cmd(state.project()) + ["logs"]
    cmd += ["--follow"] if follow else []
    cmd += ["--tail", tail] if tail is not None else []
    cmd += ["--since", since] if since else []
    cmd += ["--until", until] if until else []
    cmd += ["--timestamps"] if timestamps else []
    code = subprocess.call(cmd + list(services or []))
    if code:
        raise typer.Exit(code)


L.logs = logs
from montero_ops.cli import main  # noqa: E402

sys.argv[0] = "montero"
main()
