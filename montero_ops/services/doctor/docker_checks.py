"""Checks 1-2: the Docker daemon (reachable, versions) and the Compose v2 plugin."""

from __future__ import annotations

import re
import shutil
import subprocess

from montero_ops.client import COMPOSE_HINT
from montero_ops.dockerapi import DockerAPI
from montero_ops.engine import socket_path
from montero_ops.errors import DockerUnavailable
from montero_ops.services.doctor.context import Context, run_cmd
from montero_ops.services.doctor.finding import Finding, failed, passed, warned

MIN_DOCKER = (20, 10)
MIN_COMPOSE = (2, 0)
INSTALL_DOCKER = "sudo apt-get install docker.io (or follow https://docs.docker.com/engine/install/)"
START_DOCKER = "sudo systemctl start docker (without systemd: sudo dockerd >/var/log/dockerd.log 2>&1 &)"


def parse_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    if not m:
        return None
    return tuple(int(p) for p in m.groups() if p is not None)


def connect(ctx: Context) -> Finding:
    """docker.daemon: reachable? On success ctx.engine is set; every docker check depends on it."""
    path = socket_path()
    if path is None:
        return warned(
            "docker.daemon",
            "DOCKER_HOST points to a remote engine; doctor inspects only a local unix socket",
            "unset DOCKER_HOST to check the local engine",
        )
    engine = DockerAPI(path, timeout=ctx.timeout)
    try:
        engine.ping()
    except DockerUnavailable as exc:
        fix = exc.hint or START_DOCKER
        message = exc.message
        if shutil.which("docker") is None:
            message = f"Docker is not installed (no docker command) and {message}"
            fix = INSTALL_DOCKER
        elif "does not exist" in message:
            fix = START_DOCKER
        return failed("docker.daemon", message, fix)
    ctx.engine = engine
    return passed("docker.daemon", f"the Docker daemon answers on {path}")


def check_versions(ctx: Context) -> list[Finding]:
    assert ctx.engine is not None
    info = ctx.engine.version()
    server = str(info.get("Version", "?"))
    server_v = parse_version(server)
    client = ""
    if shutil.which("docker"):
        try:
            _, out, _ = run_cmd(["docker", "version", "--format", "{{.Client.Version}}"], ctx.timeout)
            client = out.strip().splitlines()[0] if out.strip() else ""
        except (OSError, subprocess.TimeoutExpired):
            client = ""
    client_v = parse_version(client)
    upgrade = "upgrade Docker to 20.10 or newer (sudo apt-get install --only-upgrade docker.io)"
    if server_v is None or server_v[:2] < MIN_DOCKER:
        return [failed("docker.version", f"Docker Engine {server} is older than 20.10", upgrade)]
    if client and client_v is not None and client_v[:2] < MIN_DOCKER:
        return [warned("docker.version", f"docker client {client} is older than 20.10 (engine {server})", upgrade)]
    shown = f"client {client}, " if client else ""
    return [passed("docker.version", f"Docker {shown}engine {server} (20.10+ required)")]


def check_compose(ctx: Context) -> list[Finding]:
    if shutil.which("docker") is None:
        return [failed("compose.plugin", "no docker command, so no Compose v2 plugin", INSTALL_DOCKER)]
    try:
        code, out, _ = run_cmd(["docker", "compose", "version", "--short"], ctx.timeout)
    except subprocess.TimeoutExpired:
        return [
            warned("compose.plugin", f"`docker compose version` did not answer within {ctx.timeout:.0f}s", COMPOSE_HINT)
        ]
    version = parse_version(out)
    if code != 0 or version is None:
        extra = (
            " (a standalone docker-compose v1 is installed; montero needs the v2 plugin)"
            if shutil.which("docker-compose")
            else ""
        )
        return [failed("compose.plugin", f"the Docker Compose v2 plugin is missing{extra}", COMPOSE_HINT)]
    if version[:2] < MIN_COMPOSE:
        return [failed("compose.plugin", f"Docker Compose {out.strip()} is older than 2.0", COMPOSE_HINT)]
    return [passed("compose.plugin", f"Docker Compose {out.strip()} plugin (2.0+ required)")]
