"""The deploy's own probe stream: light traffic through nginx while replicas are switched.

One keep-alive connection, like a browser or an API client, alternating `GET /health` and an
authenticated read (`GET /api/auth/me`: 200 with MONTERO_PROBE_TOKEN, else the app's own 401,
which proves the request reached a worker and its auth layer, not nginx's error page).
Any 5xx or connection error is a failure, and the deploy rolls back on the first one.

A keep-alive connection that nginx closed while idle (a graceful reload closes idle
keep-alive connections) fails the next request before any byte of an answer arrives:
clients retry that on a fresh connection, so does the probe, and the receipt counts it as
a reconnect, not as a failure. Any other error, or a second one in a row, is a failure.
"""

from __future__ import annotations

import http.client
import math
import os
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Self

INTERVAL_S = 0.1  # about 10 requests a second: light next to real traffic
TIMEOUT_S = 10.0
AUTH_PATH = "/api/auth/me"
_IDLE_CLOSE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


@dataclass
class ProbeTarget:
    host: str
    port: int
    https: bool
    token: str | None = None


@dataclass
class ProbeStream:
    target: ProbeTarget
    interval: float = INTERVAL_S
    sent: int = 0
    failed: int = 0
    reconnects: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _conn: http.client.HTTPConnection | None = None

    @property
    def first_error(self) -> str | None:
        return self.errors[0] if self.errors else None

    def start(self) -> ProbeStream:
        self._thread = threading.Thread(target=self._run, name="montero-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(TIMEOUT_S * 3)
        if self._conn:
            self._conn.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def percentile(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))  # nearest rank
        return round(ordered[index], 1)

    def _connect(self) -> http.client.HTTPConnection:
        t = self.target
        if t.https:
            # Our own nginx on loopback: availability is measured here, not the certificate.
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return http.client.HTTPSConnection(t.host, t.port, timeout=TIMEOUT_S, context=context)
        return http.client.HTTPConnection(t.host, t.port, timeout=TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.is_set():
            path = AUTH_PATH if self.sent % 2 else "/health"
            self.one(path)
            self._stop.wait(self.interval)

    def one(self, path: str) -> None:
        self.sent += 1
        started = time.monotonic()
        reused = self._conn is not None
        try:
            status = self._request(path)
        except _IDLE_CLOSE as exc:
            if not reused:
                self._fail(f"{path}: {type(exc).__name__}: {exc}")
                return
            # The reused connection was closed by nginx: retry once on a fresh one.
            self.reconnects += 1
            self._reset()
            try:
                status = self._request(path)
            except (OSError, http.client.HTTPException) as exc:
                self._fail(f"{path}: {type(exc).__name__}: {exc}")
                return
        except (OSError, http.client.HTTPException) as exc:
            self._fail(f"{path}: {type(exc).__name__}: {exc}")
            return
        self.latencies_ms.append((time.monotonic() - started) * 1000)
        expected = (200,) if path == "/health" else ((200,) if self.target.token else (401,))
        if status >= 500 or status not in expected:
            self._fail(f"{path}: HTTP {status}")

    def _fail(self, message: str) -> None:
        self.failed += 1
        self.errors.append(message)
        self._reset()

    def _reset(self) -> None:
        if self._conn:
            self._conn.close()
        self._conn = None

    def _request(self, path: str) -> int:
        if self._conn is None:
            self._conn = self._connect()
        headers = {"User-Agent": "montero-deploy-probe"}
        if path == AUTH_PATH and self.target.token:
            headers["Authorization"] = f"Bearer {self.target.token}"
        self._conn.request("GET", path, headers=headers)
        response = self._conn.getresponse()
        response.read()
        if response.getheader("connection", "").lower() == "close":
            self._reset()
        return response.status


def probe_token() -> str | None:
    return os.environ.get("MONTERO_PROBE_TOKEN") or None
