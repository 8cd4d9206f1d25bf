"""The fast path: the few GET requests `montero ps` and `montero health` need, and nothing else.

Why it exists: `ps` must be at least as fast as `docker compose ps --format json` and
`health` as fast as `docker inspect` of the stack's containers (docs/benchmarks.md,
figures 2 and 3). Importing python-on-whales costs 0.4-0.5 s and the docker SDK (with
requests and urllib3) about 0.1-0.2 s, each more than the whole command, so these two
commands ask the Engine with the standard library: /_ping, the project's containers,
one inspect each. Everything else goes through the docker SDK (dockerapi.py) or
python-on-whales (client.py); do not grow this module.
"""

from __future__ import annotations

import json
import os
import socket
import urllib.parse
from typing import Any, Protocol

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

    def _request(self, endpoint: str, params: dict[str, Any]) -> bytes:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"/{API_VERSION}{endpoint}" + (f"?{query}" if query else "")
        try:
            status, data = _exchange(self.path, self.timeout, f"GET {url} HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
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

    def inspect(self, container_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.get(f"/containers/{container_id}/json")
        return result


class ContainerReader(Protocol):
    """What `ps`/`health` read: Engine here, or dockerapi.DockerAPI (same documents)."""

    def project_containers(self, project: str, all: bool = True) -> list[dict[str, Any]]: ...

    def inspect(self, container_id: str) -> dict[str, Any]: ...
