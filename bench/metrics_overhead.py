"""Issue 18's figure: requests/s of /health and of an authenticated client list, with the /metrics
instrumentation on and off (MONTERO_METRICS=off), on the same gunicorn (4 workers), SQLite and Redis,
alternating the two modes round after round so machine noise hits both alike.

  .venv/bin/python -m bench.metrics_overhead [--seconds 5] [--rounds 5] [--record]

One warm-up round (both modes, not counted), then --rounds rounds of on, off. --record merges the
result into bench/results.json as figure 16 and regenerates docs/benchmarks.md.
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
    parser.add_argument("--record", action="store_true", help="write figure 16 into bench/results.json and the doc")
    opts = parser.parse_args()
    loads = [os.getloadavg()[0]]
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
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
        for round_no in range(opts.rounds + 1):  # round 0 warms up (page cache, imports, SQLite), not counted
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
                    seconds = opts.seconds if round_no else min(opts.seconds, 2.0)
                    for path, tok in (("/health", None), ("/api/clients?per_page=20", token)):
                        with multiprocessing.get_context("spawn").Pool(opts.clients) as pool:
                            counts = pool.map(client, [(port, path, tok, seconds)] * opts.clients)
                        if round_no:
                            results.setdefault((path, mode), []).append(sum(counts) / seconds)
                    loads.append(os.getloadavg()[0])
                finally:
                    os.killpg(server.pid, 2)
                    server.wait(timeout=30)
        lines = []
        ratios = {}
        for path in ("/health", "/api/clients?per_page=20"):
            on = statistics.median(results[(path, "on")])
            off = statistics.median(results[(path, "off")])
            ratios[path] = on / off
            lines.append((path, on, off, results[(path, "on")], results[(path, "off")]))
            print(f"{path:28} metrics on {on:8.1f} req/s  off {off:8.1f} req/s  ratio {on / off:6.1%}"
                  f"  (rounds on {[round(v) for v in results[(path, 'on')]]}, off {[round(v) for v in results[(path, 'off')]]})")
        print(f"load average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")
        if opts.record:
            record(lines, ratios, loads, started, opts)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def record(lines: list[tuple[str, float, float, list[float], list[float]]], ratios: dict[str, float],
           loads: list[float], started: str, opts: argparse.Namespace) -> None:
    sys.path.insert(0, str(REPO))
    from bench import report

    fig = report.Figure(16, "`/metrics` instrumentation: requests/s with it on vs off (issue 18)",
                        "on ≥ 95 % of off, for `/health` and the authenticated list")
    fig.header = ["endpoint", "metrics on (req/s)", "metrics off (req/s)", "on / off", "rounds on", "rounds off"]
    fig.rows = [[f"`{path}`", f"{on:,.0f}", f"{off:,.0f}", f"{on / off:.1%}", ", ".join(f"{v:.0f}" for v in r_on),
                 ", ".join(f"{v:.0f}" for v in r_off)] for path, on, off, r_on, r_off in lines]
    fig.verdict = report.verdict(all(r >= 0.95 for r in ratios.values()))
    fig.summary = ", ".join(f"`{p.split('?')[0]}` {r:.1%}" for p, r in ratios.items()) + \
        f" of the uninstrumented req/s (load {min(loads):.1f}-{max(loads):.1f})"
    fig.measured_at = started
    fig.runs = opts.rounds
    fig.machine = report.machine_line(report.machine())
    fig.notes = [
        f"`python -m bench.metrics_overhead --rounds {opts.rounds} --seconds {opts.seconds:g}`: the same gunicorn "
        f"(4 gthread workers, the app's gunicorn.conf.py), SQLite and Redis on the host, {opts.clients} keep-alive "
        "clients; each round starts gunicorn once with `MONTERO_METRICS=on` and once with `off`, one warm-up round "
        "first; medians of the rounds",
        f"load average (1 min) during the run: {min(loads):.2f}-{max(loads):.2f} on {os.cpu_count()} cores "
        "(shared with other engineers' work): the clients and the server share the 2 cores",
    ]
    report.record(fig)


if __name__ == "__main__":
    main()
