"""Fast read-only queries straight to the Docker Engine API over its unix socket.

`montero ps` and `montero health` must be at least as fast as `docker compose ps`;
importing python-on-whales alone costs more than that, so the read-only paths ask
the engine directly with the standard library. Everything that changes state goes
through python-on-whales (client.py).
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from typing import Any

from montero_ops.errors import DockerUnavailable, EngineError

DEFAULT_SOCKET = "/var/run/docker.sock"
API_VERSION = "v1.41"  # Docker 20.10+, the oldest engine montero supports


def _exchange(path: str, timeout: float, request: bytes) -> tuple[int, bytes]:
    """One HTTP/1.0 exchange over the unix socket: (status, body).

    HTTP/1.0 on purpose: the engine then answers without chunked encoding and closes
    the connection after the body, so the body is everything up to EOF and no HTTP
    library is needed. `http.client` would do the same job, but importing it (with
    `email` and `ssl`) costs about 18 ms, a quarter of `montero ps` (figure 2).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(request)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    raw = b"".join(chunks)
    head, sep, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[1].isdigit():
        raise ConnectionError(f"not an HTTP answer from {path}")
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = _unchunk(body)
    return int(status_line[1]), body


def _unchunk(body: bytes) -> bytes:
    """Chunked transfer decoding, in case a proxy in front of the engine answers HTTP/1.1."""
    out = bytearray()
    pos = 0
    while True:
        line_end = body.find(b"\r\n", pos)
        if line_end < 0:
            break
        size = int(body[pos:line_end].split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += body[line_end + 2:line_end + 2 + size]
        pos = line_end + 2 + size + 2
    return bytes(out)


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
        headers = f"{method} {url} HTTP/1.0\r\nHost: docker\r\n"
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            headers += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        try:
            status, data = _exchange(self.path, self.timeout, (headers + "\r\n").encode() + payload)
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
        if status >= 400:
            try:
                message = json.loads(data).get("message", "")
            except ValueError:
                message = data.decode(errors="replace")
            raise EngineError(status, message)
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
        except EngineError as exc:
            if exc.status == 404:
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
