"""Issue 18's figure: requests/s of /health and of an authenticated client list, with the /metrics
instrumentation on and off (MONTERO_METRICS=off), on the same gunicorn (4 workers), SQLite and Redis,
alternating the two modes round after round so machine noise hits both alike.

  .venv/bin/python -m bench.metrics_overhead [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BACKEND = REPO / "backend"
EMAIL, PASSWORD = "bench@montero.test", "bench-password-2026"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def client(args: tuple[int, str, str | None, float]) -> int:
    port, path, token, seconds = args
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: HTTP {response.status}")
        done += 1
    return done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="montero-metrics-bench-"))
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--save", "", "--dir", str(work)],
                             stdout=subprocess.DEVNULL)
    db = work / "bench.db"
    env = {**os.environ, "FLASK_ENV": "production", "SECRET_KEY": "b" * 64, "DATABASE_URL": f"sqlite:///{db}",
           "RATELIMIT_STORAGE_URL": f"redis://127.0.0.1:{redis_port}/0", "LOG_DIR": str(work / "logs"),
           "LOG_LEVEL": "WARNING", "DEFAULT_RATE_LIMIT": "100000000 per minute", "MAIL_SERVER": "127.0.0.1"}
    py = sys.executable
    try:
        subprocess.run([py, "-m", "alembic", "upgrade", "head"], cwd=BACKEND, env=env, check=True,
                       capture_output=True)
        subprocess.run([py, "-m", "flask", "--app", "wsgi", "create-admin", "--email", EMAIL, "--password", PASSWORD,
                        "--name", "Bench"], cwd=BACKEND, env=env, check=True, capture_output=True)
        results: dict[tuple[str, str], list[float]] = {}
        for _ in range(opts.rounds):
            for mode in ("on", "off"):
                port = free_port()
                server = subprocess.Popen(
                    [py, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--bind", f"127.0.0.1:{port}", "--workers", "4",
                     "--access-logfile", "/dev/null", "wsgi:app"],
                    cwd=BACKEND, env={**env, "MONTERO_METRICS": mode}, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True)
                try:
                    for _ in range(200):
                        try:
                            client((port, "/health", None, 0.01))
                            break
                        except OSError:
                            time.sleep(0.1)
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("POST", "/api/auth/login", body=json.dumps({"email": EMAIL, "password": PASSWORD}),
                                 headers={"Content-Type": "application/json"})
                    token = json.loads(conn.getresponse().read())["token"]
                    for path, tok in (("/health", None), ("/api/clients?per_page=20", token)):
                        with multiprocessing.get_context("spawn").Pool(opts.clients) as pool:
                            counts = pool.map(client, [(port, path, tok, opts.seconds)] * opts.clients)
                        results.setdefault((path, mode), []).append(sum(counts) / opts.seconds)
                finally:
                    os.killpg(server.pid, 2)
                    server.wait(timeout=30)
        for path in ("/health", "/api/clients?per_page=20"):
            on = statistics.median(results[(path, "on")])
            off = statistics.median(results[(path, "off")])
            print(f"{path:28} metrics on {on:8.1f} req/s  off {off:8.1f} req/s  ratio {on / off:6.1%}"
                  f"  (rounds on {[round(v) for v in results[(path, 'on')]]}, off {[round(v) for v in results[(path, 'off')]]})")
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
