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

    def _request(self, endpoint: str, params: dict[str, Any]) -> bytes:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"/{API_VERSION}{endpoint}" + (f"?{query}" if query else "")
        conn = _UnixHTTPConnection(self.path, self.timeout)
        try:
            conn.request("GET", url)
            resp = conn.getresponse()
            body = resp.read()
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
        except (ConnectionError, socket.timeout, OSError) as exc:
            raise DockerUnavailable(
                f"the Docker daemon is not answering on {self.path}",
                hint="start or restart Docker (`sudo systemctl restart docker`) or run `montero setup`",
            ) from exc
        finally:
            conn.close()
        if resp.status >= 400:
            try:
                message = json.loads(body).get("message", "")
            except ValueError:
                message = body.decode(errors="replace")
            raise DockerUnavailable(f"Docker Engine API error {resp.status}: {message}")
        return body

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
