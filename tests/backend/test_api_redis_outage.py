"""Issue 12 points 5 and 6: a hung Redis (SIGSTOP) keeps /health fast; the outage and recovery are logged once."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def test_hung_redis_keeps_health_fast_and_logs_each_transition_once(
    make_app: Any, own_redis: tuple[subprocess.Popen[bytes], str], tmp_path: Path
) -> None:
    from montero_api import health

    proc, url = own_redis
    app = make_app(RATELIMIT_STORAGE_URL=url, LOG_LEVEL="INFO", LOG_DIR=str(tmp_path / "logs"))
    client = app.test_client()
    assert client.get("/health").get_json()["status"] == "ok"
    proc.send_signal(signal.SIGSTOP)
    time.sleep(health.REDIS_OK_REUSE_SECONDS + 0.1)
    timings = []
    for _ in range(20):
        started = time.perf_counter()
        body = client.get("/health").get_json()
        timings.append(time.perf_counter() - started)
        assert body["status"] == "degraded"
    # Only the first probe pays the 1 s socket timeout; the failure is reused after that.
    assert sum(1 for t in timings if t > 0.5) == 1, timings
    assert max(timings[1:]) < 0.2, timings
    proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + health.REDIS_FAIL_REUSE_SECONDS + 3
    while client.get("/health").get_json()["status"] != "ok":
        assert time.monotonic() < deadline, "health did not recover"
        time.sleep(0.2)
    client.get("/health")
    text = (tmp_path / "logs" / "montero-api.log").read_text()
    assert text.count("health: degraded: Redis") == 1, text
    assert text.count("reachable again") == 1, text


def test_killed_redis_is_logged_once(make_app: Any, own_redis: tuple[subprocess.Popen[bytes], str], tmp_path: Path) -> None:
    proc, url = own_redis
    app = make_app(RATELIMIT_STORAGE_URL=url, LOG_LEVEL="INFO", LOG_DIR=str(tmp_path / "logs"))
    client = app.test_client()
    assert client.get("/health").get_json()["status"] == "ok"
    proc.kill()
    proc.wait()
    time.sleep(1.1)
    for _ in range(10):
        assert client.get("/health").get_json()["status"] == "degraded"
    text = (tmp_path / "logs" / "montero-api.log").read_text()
    assert text.count("health: degraded: Redis") == 1, text
