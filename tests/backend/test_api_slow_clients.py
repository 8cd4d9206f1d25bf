"""Issue 12 point 4: slow clients (headers sent a byte at a time) must not stall the app under real gunicorn."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

import requests
from api_helpers import Gunicorn


def test_eight_slow_connections_do_not_stall_health(gunicorn: Callable[..., Gunicorn]) -> None:
    server = gunicorn(workers=2)
    slow = []
    try:
        for _ in range(8):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # headers never finished
            slow.append(sock)
        time.sleep(0.5)
        for _ in range(5):
            for sock in slow:
                sock.sendall(b"X-Slow: 1\r\n")
            started = time.perf_counter()
            response = requests.get(server.url + "/health", timeout=5)
            elapsed = time.perf_counter() - started
            assert response.status_code == 200
            assert elapsed < 1.0, elapsed
    finally:
        for sock in slow:
            sock.close()
