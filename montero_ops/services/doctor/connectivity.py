"""Check 9: from the app container, Redis is reachable and the database folder is writable by uid 1000.

The host side (ownership and mode of ./data and the database file) works with the stack
down; when the app runs, a probe inside it (`test -w` as the container's user) has the
last word. The Redis probe is the `nc -zv redis 6379` of the troubleshooting chapter,
done with the app's own Python so no extra tool is needed in the image.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from montero_ops.errors import DockerUnavailable, EngineError
from montero_ops.services.doctor.context import Context, container_name
from montero_ops.services.doctor.data import database_file
from montero_ops.services.doctor.finding import Finding, Repair, failed, passed, skipped, warned

APP_UID = 1000
CHOWN = "sudo chown -R 1000:1000 data logs"
PROBE = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close(); print('ok')"


def container_env(container: dict[str, Any]) -> dict[str, str]:
    env = (container.get("Config") or {}).get("Env") or []
    return dict(item.split("=", 1) for item in env if "=" in item)


def probe(ctx: Context, container: dict[str, Any], cmd: list[str]) -> tuple[int, str] | None:
    """Run a probe in the container; None when it cannot run (the container stopped or is restarting)."""
    assert ctx.engine is not None
    try:
        return ctx.engine.exec_run(container["Id"], cmd)
    except (DockerUnavailable, EngineError):
        return None


def check_connectivity(ctx: Context) -> list[Finding]:
    return [_redis(ctx), _writable(ctx)]


def _redis(ctx: Context) -> Finding:
    if not ctx.docker_up:
        return skipped("connect.redis", "Docker not reachable")
    app = ctx.running("app")
    if app is None:
        return skipped("connect.redis", "the app is not running")
    url = container_env(app).get("RATELIMIT_STORAGE_URL", "")
    if not url.startswith(("redis://", "rediss://")):
        return passed("connect.redis", "the app does not use Redis (RATELIMIT_STORAGE_URL unset: in-memory limits)")
    parts = urlsplit(url)
    host, port = parts.hostname or "redis", parts.port or 6379
    result = probe(ctx, app, ["python", "-c", PROBE, host, str(port)])
    if result is not None and (result[0] in (126, 127) or "executable file not found" in result[1]):
        result = probe(ctx, app, ["python3", "-c", PROBE, host, str(port)])
    if result is None:
        return skipped("connect.redis", f"{container_name(app)} stopped before the probe could run (see restarts.app)")
    code, out = result
    if code == 0:
        return passed("connect.redis", f"{container_name(app)} reaches Redis at {host}:{port}")
    last = ctx.scrub(out.strip().splitlines()[-1] if out.strip() else f"exit code {code}")[:200]
    redis_up = ctx.running("redis") is not None
    fix = (
        "montero start redis"
        if not redis_up
        else "montero restart redis   # and check the network: montero inspect app --network"
    )
    return failed("connect.redis", f"{container_name(app)} cannot reach Redis at {host}:{port}: {last}", fix)


def host_writable(path: Path, uid: int = APP_UID) -> bool:
    """Can uid 1000 (not root) write `path`, judging by owner and mode bits on the host?"""
    st = path.stat()
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid == uid:
        return bool(mode & stat.S_IWUSR)
    if st.st_gid == uid:  # the image's appuser group is gid 1000 too
        return bool(mode & stat.S_IWGRP)
    return bool(mode & stat.S_IWOTH)


def _owner(path: Path) -> str:
    st = path.stat()
    return f"uid {st.st_uid}:gid {st.st_gid}, mode {stat.S_IMODE(st.st_mode):04o}"


def _chown_repair(ctx: Context) -> Repair:
    def apply() -> str:
        import os

        for folder in (ctx.project.data_dir, ctx.project.logs_dir):
            if not folder.exists():
                continue
            for root, dirs, files in os.walk(folder):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.chown(name, APP_UID, APP_UID)
        return "chown -R 1000:1000 data logs"

    return Repair("give data/ and logs/ to uid 1000 (the app's user)", apply)


def _writable(ctx: Context) -> Finding:
    data = ctx.project.data_dir
    if not data.exists():
        return warned("connect.data_writable", f"{data} does not exist yet", f"mkdir -p data logs && {CHOWN}")
    db = database_file(ctx)
    targets = [data] + ([db] if db is not None and db.exists() else [])
    blocked = [p for p in targets if not host_writable(p)]
    app = ctx.running("app") if ctx.docker_up else None
    inner = "/app/data" + (f"/{db.name}" if db is not None and db.exists() and db.parent == data else "")
    result = probe(ctx, app, ["sh", "-c", f"test -w /app/data && test -w {inner}"]) if app is not None else None
    if app is not None and result is not None:
        if result[0] == 0:
            return passed("connect.data_writable", f"{container_name(app)} can write {inner}")
        shown = "; ".join(f"{p} is {_owner(p)}" for p in (blocked or targets))
        return failed(
            "connect.data_writable",
            f"{container_name(app)} cannot write {inner} ({shown})",
            CHOWN,
            repair=_chown_repair(ctx),
        )
    if blocked:
        shown = "; ".join(f"{p.name if p != data else 'data/'} is {_owner(p)}" for p in blocked)
        return failed(
            "connect.data_writable", f"uid 1000 (the app) cannot write: {shown}", CHOWN, repair=_chown_repair(ctx)
        )
    return passed("connect.data_writable", f"data/ writable by uid 1000 ({_owner(data)})")
