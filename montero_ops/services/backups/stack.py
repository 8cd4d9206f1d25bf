"""The compose stack as backups see it: what runs, stop/start with health, Redis access.

`Stack` is the seam: ComposeStack drives the real stack; tests and benchmarks pass
their own object (a local redis-server, or nothing running at all).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from montero_ops.errors import CommandFailed, MonteroError
from montero_ops.project import Project
from montero_ops.services.backups.redis_data import RESTORE_SCRIPT, RedisSource
from montero_ops.services.backups.sqlite_db import read_env_file

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from montero_ops.dockerapi import DockerAPI


class Stack(Protocol):
    def running(self, service: str) -> bool: ...
    def stop(self, services: list[str]) -> None: ...
    def start(self, services: list[str]) -> None:
        """Start and wait until healthy; raise MonteroError saying why when it is not."""
    def redis(self) -> RedisSource: ...
    def redis_snapshot_stopped(self, dest: Path) -> dict[str, object]: ...
    def redis_restore(self, src: Path, aof: bool) -> None: ...


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

    def redis_restore(self, src: Path, aof: bool) -> None:
        raise MonteroError("no Redis data volume can be reached here")


# Run in a throwaway container of the redis image with the volume at /data (read-only)
# and the output folder at /out: a private redis-server loads exactly what the real one
# would (AOF when on), and SAVE (safe here: nobody else uses it) writes a consistent dump.rdb.
STOPPED_SNAPSHOT_SCRIPT = r"""
set -eu
W=/tmp/work; mkdir -p $W
if [ -d /data/appendonlydir ]; then AOF=yes; cp -r /data/appendonlydir $W/; else AOF=no; fi
if [ -e /data/dump.rdb ]; then cp /data/dump.rdb $W/; fi
redis-server --dir $W --appendonly $AOF --save "" --port 0 --unixsocket /tmp/s.sock --daemonize yes --logfile /tmp/r.log
i=0; until redis-cli -s /tmp/s.sock ping 2>/dev/null | grep -q PONG; do
  i=$((i+1)); if [ $i -gt 600 ]; then cat /tmp/r.log >&2; exit 1; fi; sleep 0.1; done
redis-cli -s /tmp/s.sock save >/dev/null
redis-cli -s /tmp/s.sock shutdown nosave >/dev/null 2>&1 || true
cp $W/dump.rdb /out/dump.rdb
if [ $AOF = yes ]; then cp -r /data/appendonlydir /out/appendonlydir; fi
echo "persistence=$AOF"
"""


class ComposeStack:
    def __init__(self, project: Project, client: DockerClient, health_timeout: float = 180.0,
                 docker: DockerAPI | None = None) -> None:
        self.project, self.client, self.health_timeout = project, client, health_timeout
        self._docker = docker
        self._config: dict[str, Any] | None = None

    @property
    def docker(self) -> DockerAPI:
        if self._docker is None:
            from montero_ops.dockerapi import DockerAPI

            self._docker = DockerAPI()
        return self._docker

    def _containers(self, service: str) -> list[dict[str, Any]]:
        return [
            c for c in self.docker.project_containers(self.project.name)
            if c.get("Labels", {}).get("com.docker.compose.service") == service
        ]

    def running(self, service: str) -> bool:
        return any(c.get("State") == "running" for c in self._containers(service))

    def stop(self, services: list[str]) -> None:
        self.client.compose.stop(services)

    def start(self, services: list[str]) -> None:
        """`compose start` keeps the current scale (up would reset `--scale app=3` to 1)."""
        if all(self._containers(s) for s in services):
            self.client.compose.start(services)
        else:
            self.client.compose.up(services, detach=True, quiet=True)
        engine = self.docker
        deadline = time.monotonic() + self.health_timeout
        while True:
            pending = []
            for service in services:
                for c in self._containers(service):
                    state = engine.inspect(c["Id"])["State"]
                    health = (state.get("Health") or {}).get("Status")
                    if state.get("Status") in ("exited", "dead"):
                        raise MonteroError(f"service '{service}' exited (code {state.get('ExitCode')}) after start",
                                           hint=f"see `montero logs {service}`")
                    if health == "unhealthy":
                        raise MonteroError(f"service '{service}' is unhealthy after start",
                                           hint=f"see `montero logs {service}`")
                    if state.get("Status") != "running" or health not in (None, "healthy"):
                        pending.append(service)
            if not pending:
                return
            if time.monotonic() > deadline:
                raise MonteroError(f"{', '.join(sorted(set(pending)))} not healthy after {int(self.health_timeout)} s",
                                   hint="see `montero logs`")
            time.sleep(1)

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
        from python_on_whales.exceptions import DockerException

        try:
            out = self.client.run(self.redis_image(), ["-c", script], entrypoint="sh", volumes=volumes,
                                  envs=envs, remove=True, user="0")
        except DockerException as exc:
            from montero_ops.errors import docker_error_line

            raise CommandFailed(f"throwaway redis container failed: {docker_error_line(exc)}") from exc
        return str(out or "")

    def redis_snapshot_stopped(self, dest: Path) -> dict[str, object]:
        dest.mkdir(parents=True, exist_ok=True)
        out = self._throwaway(STOPPED_SNAPSHOT_SCRIPT, [(self.redis_volume(), "/data", "ro"), (str(dest), "/out", "rw")], {})
        mode = "aof" if "persistence=yes" in out else "rdb"
        return {"persistence": mode, "source": "volume (stack stopped)", "dbfilename": "dump.rdb"}

    def redis_restore(self, src: Path, aof: bool) -> None:
        self._throwaway(RESTORE_SCRIPT, [(self.redis_volume(), "/data", "rw"), (str(src), "/src", "ro")],
                        {"SRC": "/src", "DATA": "/data", "DBFILE": "dump.rdb", "AOF": "yes" if aof else "no"})


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
