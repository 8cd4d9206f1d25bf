"""Fast read-only queries straight to the Docker Engine API over its unix socket.

`montero ps` and `montero health` must be at least as fast as `docker compose ps`;
importing python-on-whales alone costs more than that, so the read-only paths ask
the engine directly with the standard library. Everything that changes state goes
through python-on-whales (client.py).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import urllib.parse
from typing import Any

from montero_ops.errors import DockerUnavailable

DEFAULT_SOCKET = "/var/run/docker.sock"
API_VERSION = "v1.41"  # Docker 20.10+, the oldest engine montero supports


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


def socket_path() -> str | None:
    """The unix socket to use, or None when DOCKER_HOST points elsewhere (tcp/ssh)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return DEFAULT_SOCKET
    if host.startswith("unix://"):
        return host[len("unix://"):]
    return None


class Engine:
    def __init__(self, path: str | None = None, timeout: float = 10.0) -> None:
        self.path = path or socket_path() or DEFAULT_SOCKET
        self.timeout = timeout

    def get(self, endpoint: str, **params: Any) -> Any:
        body = self._request(endpoint, params)
        return json.loads(body) if body else None

    def _request(
        self, endpoint: str, params: dict[str, Any], method: str = "GET", body: Any = None
    ) -> bytes:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"/{API_VERSION}{endpoint}" + (f"?{query}" if query else "")
        conn = _UnixHTTPConnection(self.path, self.timeout)
        try:
            if body is None:
                conn.request(method, url)
            else:
                conn.request(method, url, body=json.dumps(body), headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data: bytes = resp.read()
        except FileNotFoundError as exc:
            raise DockerUnavailable(
                f"the Docker socket {self.path} does not exist: the daemon is not running",
                hint="start Docker (`sudo systemctl start docker`) or run `montero setup`",
            ) from exc
        except PermissionError as exc:
            raise DockerUnavailable(
                f"permission denied on the Docker socket {self.path}",
                hint="add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again)",
            ) from exc
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise DockerUnavailable(
                f"the Docker daemon is not answering on {self.path}",
                hint="start or restart Docker (`sudo systemctl restart docker`) or run `montero setup`",
            ) from exc
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")
            raise DockerUnavailable(f"Docker Engine API error {resp.status}: {message}")
        return data

    def ping(self) -> None:
        """Raise DockerUnavailable (exit 3, with the fix) unless the daemon answers."""
        self._request("/_ping", {})

    def project_containers(self, project: str, all: bool = True) -> list[dict[str, Any]]:
        """Containers of one compose project (list form: Id, Names, State, Status, Labels …)."""
        filters = json.dumps({"label": [f"com.docker.compose.project={project}"]})
        result: list[dict[str, Any]] = self.get("/containers/json", all=int(all), filters=filters)
        return result

    def project_volumes(self, project: str) -> list[str]:
        """Names of the volumes compose created for one project."""
        filters = json.dumps({"label": [f"com.docker.compose.project={project}"]})
        result: dict[str, Any] = self.get("/volumes", filters=filters) or {}
        return sorted(v["Name"] for v in result.get("Volumes") or [])

    def inspect(self, container_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/containers/{container_id}/json")
        return result

    # Read-only helpers used by `montero doctor` (exec runs a read-only probe command).

    def version(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/version")
        return result

    def info(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/info")
        return result

    def system_df(self) -> dict[str, Any]:
        result: dict[str, Any] = self.get("/system/df")
        return result

    def containers(self, all: bool = True) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.get("/containers/json", all=int(all))
        return result

    def image_inspect(self, name: str) -> dict[str, Any] | None:
        """The image's inspect document, or None when no such image exists."""
        try:
            result: dict[str, Any] = self.get(f"/images/{urllib.parse.quote(name, safe='')}/json")
        except DockerUnavailable as exc:
            if "404" in exc.message:
                return None
            raise
        return result

    def logs_tail(self, container_id: str, lines: int = 50) -> str:
        """The last `lines` lines of a container's stdout+stderr, as text."""
        raw = self._request(
            f"/containers/{container_id}/logs", {"stdout": 1, "stderr": 1, "tail": lines}
        )
        return demux(raw).decode(errors="replace")

    def exec_run(self, container_id: str, cmd: list[str], user: str | None = None) -> tuple[int, str]:
        """Run a short probe command in a running container: (exit code, stdout+stderr)."""
        spec: dict[str, Any] = {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True}
        if user:
            spec["User"] = user
        created = json.loads(self._request(f"/containers/{container_id}/exec", {}, "POST", spec))
        exec_id = created["Id"]
        raw = self._request(f"/exec/{exec_id}/start", {}, "POST", {"Detach": False, "Tty": False})
        state = self.get(f"/exec/{exec_id}/json")
        code = state.get("ExitCode")
        return (code if isinstance(code, int) else -1), demux(raw).decode(errors="replace")


def demux(raw: bytes) -> bytes:
    """Undo the Engine's stream multiplexing (8-byte frame headers) when present."""
    if len(raw) < 8 or raw[0] not in (0, 1, 2) or raw[1:4] != b"\x00\x00\x00":
        return raw  # a TTY container: the stream is raw
    out = bytearray()
    pos = 0
    while pos + 8 <= len(raw):
        size = int.from_bytes(raw[pos + 4:pos + 8], "big")
        out += raw[pos + 8:pos + 8 + size]
        pos += 8 + size
    return bytes(out)
