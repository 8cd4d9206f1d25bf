"""The compose stack as backups see it: what runs, stop/start with health, Redis access.

`Stack` is the seam: ComposeStack drives the real stack; tests and benchmarks pass
their own object (a local redis-server, or nothing running at all).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from montero_ops.errors import CommandFailed, MonteroError
from montero_ops.project import Project
from montero_ops.services.backups.redis_data import RESTORE_SCRIPT, RedisSource
from montero_ops.services.backups.sqlite_db import read_env_file
from montero_ops.services.wait import Readiness, readiness, wait_until

if TYPE_CHECKING:
    from collections.abc import Callable

    from python_on_whales import DockerClient

    from montero_ops.dockerapi import DockerAPI
    from montero_ops.state import State


class Stack(Protocol):
    def running(self, service: str) -> bool: ...
    def stop(self, services: list[str]) -> None: ...
    def start(self, services: list[str]) -> None:
        """Start and wait until healthy; raise MonteroError saying why when it is not."""
    def redis(self) -> RedisSource: ...
    def redis_snapshot_stopped(self, dest: Path) -> dict[str, object]: ...
    def redis_raw_copy(self, dest: Path) -> dict[str, object]:
        """Redis's files exactly as they are on its volume (when no Redis can load them)."""
    def redis_restore(self, src: Path, aof: bool, raw: bool = False) -> None:
        """Put a snapshot in place (rebuilding the AOF when `aof`), or with `raw` the files as they were."""


class NoStack:
    """Nothing runs (tests, or a machine without Docker): files only."""

    def running(self, service: str) -> bool:
        return False

    def stop(self, services: list[str]) -> None:
        pass

    def start(self, services: list[str]) -> None:
        pass

    def redis(self) -> RedisSource:
        raise MonteroError("Redis is not running", hint="run `montero up`, or back up sqlite only")

    def redis_snapshot_stopped(self, dest: Path) -> dict[str, object]:
        raise MonteroError("Redis is not running and no Docker volume can be read here")

    def redis_raw_copy(self, dest: Path) -> dict[str, object]:
        raise MonteroError("no Redis data volume can be reached here")

    def redis_restore(self, src: Path, aof: bool, raw: bool = False) -> None:
        raise MonteroError("no Redis data volume can be reached here")


# Run in a throwaway container of the redis image with the volume at /data (read-only)
# and the output folder at /out: a private redis-server loads exactly what the real one
# would (AOF when on), and SAVE (safe here: nobody else uses it) writes a consistent dump.rdb.
# DATA and OUT override the two folders (tests run the same script on a local redis-server).
STOPPED_SNAPSHOT_SCRIPT = r"""
set -eu
D="${DATA:-/data}"; O="${OUT:-/out}"
W=$(mktemp -d)
if [ -d "$D/appendonlydir" ]; then AOF=yes; cp -r "$D/appendonlydir" "$W/"; else AOF=no; fi
if [ -e "$D/dump.rdb" ]; then cp "$D/dump.rdb" "$W/"; fi
redis-server --dir "$W" --appendonly $AOF --save "" --port 0 --unixsocket "$W/s.sock" --logfile "$W/r.log" &
PID=$!
i=0; until redis-cli -s "$W/s.sock" ping 2>/dev/null | grep -q PONG; do
  i=$((i+1))
  if [ $i -gt 600 ] || ! kill -0 $PID 2>/dev/null; then
    # The last line Redis logged says why (e.g. "Bad file format reading the append only file").
    grep -v '^$' "$W/r.log" | tail -n 1 | sed 's/^[0-9]*:[A-Z] [^#*]*[#*] //' >&2
    kill $PID 2>/dev/null || true; rm -rf "$W"; exit 1
  fi
  sleep 0.1; done
redis-cli -s "$W/s.sock" save >/dev/null
redis-cli -s "$W/s.sock" shutdown nosave >/dev/null 2>&1 || true
wait $PID || true
cp "$W/dump.rdb" "$O/dump.rdb"
if [ $AOF = yes ]; then cp -r "$D/appendonlydir" "$O/appendonlydir"; fi
rm -rf "$W"
echo "persistence=$AOF"
"""

# The files as they are, when no redis-server can load them (a damaged AOF): a restore's
# safety copy must not need the Redis it is about to replace.
RAW_COPY_SCRIPT = r"""
set -eu
D="${DATA:-/data}"; O="${OUT:-/out}"
if [ -e "$D/dump.rdb" ]; then cp -p "$D/dump.rdb" "$O/dump.rdb"; fi
if [ -d "$D/appendonlydir" ]; then cp -rp "$D/appendonlydir" "$O/appendonlydir"; AOF=yes; else AOF=no; fi
echo "persistence=$AOF"
"""


def run_local(script: str, data: Path, out: Path) -> str:
    """One of the throwaway container's scripts on this machine's redis-server (tests, bare metal)."""
    import os
    import subprocess

    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=300, check=False,
                          env=dict(os.environ, DATA=str(data), OUT=str(out)))
    if proc.returncode != 0:
        line = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        raise CommandFailed(f"throwaway redis container failed: {line}")
    return proc.stdout


class ComposeStack:
    def __init__(self, project: Project, client: DockerClient, health_timeout: float = 180.0,
                 *, docker: DockerAPI) -> None:
        self.project, self.client, self.health_timeout = project, client, health_timeout
        self.docker = docker
        self._config: dict[str, Any] | None = None

    def _containers(self, service: str) -> list[dict[str, Any]]:
        return [
            c for c in self.docker.project_containers(self.project.name)
            if c.get("Labels", {}).get("com.docker.compose.service") == service
        ]

    def running(self, service: str) -> bool:
        """Running, or crash-looping: Docker keeps restarting a `restarting` container, so its
        files may be replaced only after it is stopped (and it is started again after)."""
        return any(c.get("State") in ("running", "restarting") for c in self._containers(service))

    def stop(self, services: list[str]) -> None:
        self.client.compose.stop(services)

    def start(self, services: list[str]) -> None:
        """`compose start` keeps the current scale (up would reset `--scale app=3` to 1)."""
        if all(self._containers(s) for s in services):
            self.client.compose.start(services)
        else:
            self.client.compose.up(services, detach=True, quiet=True)
        engine = self.docker
        pending: list[str] = []

        def ready() -> bool | None:
            pending.clear()
            for service in services:
                for c in self._containers(service):
                    state = engine.inspect(c["Id"])["State"]
                    health = (state.get("Health") or {}).get("Status")
                    verdict = readiness(str(state.get("Status")), health, state.get("ExitCode"))
                    # A service a backup stopped must run again: an exit, even with code 0, is a failure.
                    if state.get("Status") in ("exited", "dead"):
                        raise MonteroError(f"service '{service}' exited (code {state.get('ExitCode')}) after start",
                                           hint=f"see `montero logs {service}`")
                    if verdict is Readiness.FAILED:
                        raise MonteroError(f"service '{service}' is unhealthy after start",
                                           hint=f"see `montero logs {service}`")
                    if verdict is not Readiness.READY:
                        pending.append(service)
            return None if pending else True

        if wait_until(ready, self.health_timeout, 1.0) is None:
            raise MonteroError(f"{', '.join(sorted(set(pending)))} not healthy after {int(self.health_timeout)} s",
                               hint="see `montero logs`")

    def config(self) -> dict[str, Any]:
        if self._config is None:
            self._config = self.client.compose.config(return_json=True)
        return self._config

    def redis_image(self) -> str:
        return str(self.config()["services"]["redis"]["image"])

    def redis_volume(self) -> str:
        for mount in self.config()["services"]["redis"].get("volumes", []):
            if mount.get("type") == "volume" and mount.get("target") == "/data":
                source = mount["source"]
                return str(self.config().get("volumes", {}).get(source, {}).get("name") or source)
        raise MonteroError("the redis service has no named volume at /data in docker/compose.yml")

    def redis(self) -> RedisSource:
        return ComposeRedis(self)

    def _throwaway(self, script: str, volumes: list[tuple[str, str, str]], envs: dict[str, str]) -> str:
        """Run `script` in a throwaway container of the redis image; its output, or CommandFailed with
        the script's own last stderr line (Redis's reason, e.g. "Bad file format reading the append only
        file"): python-on-whales' container run captures no stderr to say it with."""
        import subprocess

        from montero_ops.services.dockercmd import docker_cmd

        cmd = docker_cmd(self.client)
        cmd += ["run", "--rm", "--user", "0", "--entrypoint", "sh"]
        for source, target, mode in volumes:
            cmd += ["--volume", f"{source}:{target}:{mode}"]
        for key, value in envs.items():
            cmd += ["--env", f"{key}={value}"]
        cmd += [self.redis_image(), "-c", script]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CommandFailed(f"throwaway redis container failed: {exc}") from exc
        if done.returncode != 0:
            lines = [ln.strip() for ln in done.stderr.splitlines() if ln.strip()]
            line = lines[-1] if lines else f"exit code {done.returncode}"
            for prefix in ("docker: Error response from daemon: ", "Error response from daemon: "):
                line = line.removeprefix(prefix)
            raise CommandFailed(f"throwaway redis container failed: {line}")
        return done.stdout

    def redis_snapshot_stopped(self, dest: Path) -> dict[str, object]:
        dest.mkdir(parents=True, exist_ok=True)
        out = self._throwaway(STOPPED_SNAPSHOT_SCRIPT, [(self.redis_volume(), "/data", "ro"), (str(dest), "/out", "rw")], {})
        mode = "aof" if "persistence=yes" in out else "rdb"
        return {"persistence": mode, "source": "volume (stack stopped)", "dbfilename": "dump.rdb"}

    def redis_raw_copy(self, dest: Path) -> dict[str, object]:
        dest.mkdir(parents=True, exist_ok=True)
        out = self._throwaway(RAW_COPY_SCRIPT, [(self.redis_volume(), "/data", "ro"), (str(dest), "/out", "rw")], {})
        mode = "aof" if "persistence=yes" in out else "rdb"
        return {"persistence": mode, "source": "raw files of the volume", "dbfilename": "dump.rdb"}

    def redis_restore(self, src: Path, aof: bool, raw: bool = False) -> None:
        self._throwaway(RESTORE_SCRIPT, [(self.redis_volume(), "/data", "rw"), (str(src), "/src", "ro")],
                        {"SRC": "/src", "DATA": "/data", "DBFILE": "dump.rdb", "AOF": "yes" if aof else "no",
                         "RAW": "yes" if raw else "no"})


class ComposeRedis:
    """redis-cli inside the running redis container; files out with docker cp."""

    def __init__(self, stack: ComposeStack) -> None:
        self.stack = stack
        password = read_env_file(stack.project.env_file).get("REDIS_PASSWORD")
        self.envs = {"REDISCLI_AUTH": password} if password else {}

    def cli(self, *args: str) -> str:
        from python_on_whales.exceptions import DockerException

        try:
            out = self.stack.client.compose.execute("redis", ["redis-cli", *args], tty=False, envs=self.envs)
        except DockerException as exc:
            from montero_ops.errors import docker_error_line

            raise CommandFailed(f"redis-cli {args[0]} failed: {docker_error_line(exc)}") from exc
        return str(out or "")

    def fetch(self, remote_path: str, dest: Path) -> None:
        running = [c for c in self.stack._containers("redis") if c.get("State") == "running"]
        if not running:
            raise MonteroError("service 'redis' is not running")
        self.stack.client.copy((running[0]["Id"], remote_path), dest)


def scratch_dir(near: Path) -> Path:
    near.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".partial-", dir=near))


def open_stack(state: State, what: str, command: str, warn: Callable[[str], None]) -> Stack:
    """The compose stack as it was started; without Docker a SQLite-only operation (WHAT "sqlite")
    still works on the files (NoStack, after a warning), anything else needs Docker (exit 3)."""
    from montero_ops.errors import DockerUnavailable

    try:
        docker = state.docker(check=False)
        docker.ping()
        from montero_ops.services.stack import current_variant

        # As started: a replicate service (Litestream holds the database) is stopped and started too.
        project = current_variant(docker, state.project())
        return ComposeStack(project, state.client(project), docker=docker)
    except DockerUnavailable as exc:
        if what != "sqlite":
            # Redis lives in a Docker volume: say what is needed, and what works without it.
            raise DockerUnavailable(f"{exc.message} (Redis data is in a Docker volume)",
                                    hint=f"{exc.hint}; the database alone needs no Docker: `montero {command} sqlite`"
                                    ) from exc
        warn("Docker is not reachable: working on the SQLite file only; "
             "a restore goes on only if no process has the database open")
        return NoStack()


def refuse_sqlite_on_postgres(state: State, what: str, command: str) -> None:
    """A stack started on PostgreSQL (profile postgres) keeps its data there: backing up or
    restoring ./data's SQLite file (WHAT all or sqlite) would handle a stale file and look like success."""
    if what not in ("all", "sqlite"):
        return
    from montero_ops.errors import DockerUnavailable, UsageError
    from montero_ops.services.stack import POSTGRES_PROFILE, current_variant

    try:
        started = current_variant(state.docker(), state.project())
    except DockerUnavailable:
        return  # no engine: nothing runs, the SQLite file is what there is
    if POSTGRES_PROFILE in started.profiles:
        raise UsageError(
            f"this stack runs on PostgreSQL (profile postgres): `montero {command} {what}` "
            "would handle the SQLite file in ./data, not your data",
            hint=f"run `montero {command} postgres` (and `montero {command} redis` for Redis)",
        )
