"""Figures 7 and 8: HTTP throughput of the stack, and concurrent SQLite writes through the API."""

from __future__ import annotations

import http.client
import json
import re
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field

from bench.lib import BenchError, Settings, fmt_ratio, free_port, log, run, wait_http
from bench.report import Figure, verdict
from bench.stack import REPO, Stack

USER = {"email": "bench@example.com", "password": "Bench-password-2026!", "full_name": "Bench"}


def _request(port: int, method: str, path: str, body: dict | None = None, token: str | None = None,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, dict]:
    own = conn is None
    conn = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        if own:
            conn.close()
    try:
        return resp.status, json.loads(raw) if raw else {}
    except ValueError:
        return resp.status, {"raw": raw[:200].decode(errors="replace")}


def login(port: int) -> str:
    """Register the bench account (REGISTRATION_OPEN in the bench .env) and log in: a Bearer token."""
    status, body = _request(port, "POST", "/api/auth/register", USER)
    if status not in (201, 409):
        raise BenchError(f"register answered {status}: {body}")
    status, body = _request(port, "POST", "/api/auth/login", {k: USER[k] for k in ("email", "password")})
    if status != 200 or "token" not in body:
        raise BenchError(f"login answered {status}: {body}")
    return str(body["token"])


@dataclass
class Wrk:
    rps: float
    p99_ms: float
    errors: int
    requests: int


def wrk(url: str, seconds: int, token: str | None = None, connections: int = 32) -> Wrk:
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "--latency", url]
    if token:
        cmd[1:1] = ["-H", f"Authorization: Bearer {token}"]
    out = run(cmd, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.MULTILINE)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(g) for g in sock.groups()) if sock else 0)
    total = re.search(r"(\d+) requests in", out)
    return Wrk(rps, p99_ms, errors, int(total.group(1)) if total else 0)


class HelloApp:
    """bench/hello_app.py under the app image's gunicorn and gunicorn.conf.py, same CPU/memory limits."""

    def __init__(self, stack: Stack) -> None:
        self.name = f"{stack.name}-hello"
        self.port = free_port()
        app = stack.config()["services"]["app"]
        limits = app.get("deploy", {}).get("resources", {}).get("limits", {})
        cmd = ["docker", "run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.port}:5000",
               "--read-only", "--tmpfs", "/tmp", "--env-file", str(stack.root / ".env"), "-v", f"{REPO / 'bench' / 'hello_app.py'}:/bench/hello_app.py:ro",
               "-e", f"GUNICORN_WORKERS={stack.gunicorn_workers()}", "--entrypoint", "gunicorn"]
        if limits.get("cpus"):
            cmd += ["--cpus", str(limits["cpus"])]
        if limits.get("memory"):
            cmd += ["--memory", str(limits["memory"])]
        cmd += [stack.app_image(), "-c", "/app/gunicorn.conf.py", "--chdir", "/bench", "hello_app:app"]
        run(cmd)
        try:
            wait_http(f"http://127.0.0.1:{self.port}/health", timeout=60)
        except BenchError as exc:
            logs = run(["docker", "logs", "--tail", "5", self.name], check=False)
            self.close()
            raise BenchError(f"{exc}; hello app log: {(logs.stdout + logs.stderr).strip()[-300:]}") from None

    def close(self) -> None:
        run(["docker", "rm", "-f", self.name], check=False)


def fig7(stack: Stack, settings: Settings) -> Figure:
    fig = Figure(7, "requests/s and p99 of `/health` and an authenticated list through gunicorn and nginx",
                 "`/health` ≥ 80% of the bare Flask ceiling, zero errors")
    seconds = 3 if settings.quick else 5
    token = login(stack.app_port)
    for i in range(20):  # a page of real rows to list
        _request(stack.app_port, "POST", "/api/clients", {"name": f"Bench {i}", "nit": f"900{i:06d}"}, token)
    log("fig7: starting nginx (profile production) and the hello app")
    stack.compose("up", "-d", "--wait", "nginx", profiles=("production",), timeout=300)
    hello = HelloApp(stack)
    try:
        app, web = f"http://127.0.0.1:{stack.app_port}", f"http://127.0.0.1:{stack.http_port}"
        targets = {
            "bare Flask hello (ceiling), gunicorn": (f"http://127.0.0.1:{hello.port}/health", None),
            "/health, gunicorn": (f"{app}/health", None),
            "/api/clients (Bearer), gunicorn": (f"{app}/api/clients?per_page=20", token),
            "/health, nginx → gunicorn": (f"{web}/health", None),
            "/api/clients (Bearer), nginx → gunicorn": (f"{web}/api/clients?per_page=20", token),
        }
        for url, tok in targets.values():  # warm-up: every worker imports and connects
            wrk(url, 2, tok)
        results: dict[str, list[Wrk]] = {name: [] for name in targets}
        for _ in range(settings.runs):
            for name, (url, tok) in targets.items():
                results[name].append(wrk(url, seconds, tok))
    finally:
        hello.close()
    ceiling = statistics.median(r.rps for r in results["bare Flask hello (ceiling), gunicorn"])
    fig.header = ["target", "requests/s (median)", "p99 (median)", "errors (all runs)", "share of the ceiling"]
    for name, rs in results.items():
        rps = statistics.median(r.rps for r in rs)
        fig.rows.append([name, f"{rps:,.0f}", f"{statistics.median(r.p99_ms for r in rs):.1f} ms",
                         str(sum(r.errors for r in rs)), f"{rps / ceiling:.0%}"])
    health = statistics.median(r.rps for r in results["/health, gunicorn"])
    errors = sum(r.errors for rs in results.values() for r in rs)
    share = health / ceiling
    fig.verdict = verdict(share >= 0.8 and errors == 0)
    fig.summary = f"/health {health:,.0f} req/s = {share:.0%} of the ceiling ({ceiling:,.0f}); {errors} errors"
    fig.runs = settings.runs
    fig.notes += [
        f"`wrk -t2 -c32 -d{seconds}s --latency` on loopback, targets alternating in every round; wrk shares the "
        "machine's cores with the server, equally for every target",
        f"gunicorn with the image's gunicorn.conf.py and {stack.gunicorn_workers()} workers for both the app and "
        "the hello app (bench/hello_app.py, run from the app image with the same CPU/memory limits)",
        "the bench stack sets DEFAULT_RATE_LIMIT high and REGISTRATION_OPEN=true in its .env: the per-request "
        "limiter check against Redis still runs, but a load test would otherwise measure 429s",
    ]
    return fig


@dataclass
class WriteRun:
    ok: int = 0
    locked: int = 0
    other_errors: int = 0
    seconds: float = 0.0
    samples: list[str] = field(default_factory=list)


def _writers(port: int, token: str, writers: int, seconds: float) -> WriteRun:
    result = WriteRun()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        n = 0
        while time.monotonic() < deadline and n < 100_000:
            n += 1
            body = {"name": f"Writer {index}", "nit": uuid.uuid4().hex[:20], "city": "Bogota"}
            try:
                status, data = _request(port, "POST", "/api/clients", body, token, conn)
            except (OSError, http.client.HTTPException) as exc:
                status, data = 0, {"raw": str(exc)}
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                if status == 201:
                    result.ok += 1
                elif "locked" in json.dumps(data).lower():
                    result.locked += 1
                else:
                    result.other_errors += 1
                    if len(result.samples) < 3:
                        result.samples.append(f"{status} {json.dumps(data)[:120]}")
        conn.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(writers)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=seconds + 60)
    result.seconds = time.monotonic() - start
    return result


def fig8(stack: Stack, settings: Settings) -> Figure:
    fig = Figure(8, "SQLite writes/s through the API: 8 concurrent writers vs one", "zero lock errors")
    seconds = 3.0 if settings.quick else 5.0
    token = login(stack.app_port)
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - 1))
    _writers(stack.app_port, token, 8, 1.0)  # warm-up
    runs: dict[int, list[WriteRun]] = {1: [], 8: []}
    for _ in range(settings.runs):
        for writers in (1, 8):
            runs[writers].append(_writers(stack.app_port, token, writers, seconds))
    logs = subprocess.run(stack.compose_cmd("logs", "app", "--since", since, "--no-log-prefix"), env=stack.env,
                          capture_output=True, text=True, timeout=120).stdout
    logged_locks = logs.lower().count("database is locked")
    fig.header = ["writers", "writes/s (median)", "successful writes", "`database is locked` answers",
                  "other errors"]
    rate = {}
    for writers, rs in runs.items():
        rate[writers] = statistics.median(r.ok / r.seconds for r in rs)
        fig.rows.append([str(writers), f"{rate[writers]:,.0f}", str(sum(r.ok for r in rs)),
                         str(sum(r.locked for r in rs)), str(sum(r.other_errors for r in rs))])
    locked = sum(r.locked for rs in runs.values() for r in rs) + logged_locks
    others = [s for rs in runs.values() for r in rs for s in r.samples]
    fig.verdict = verdict(locked == 0)
    fig.summary = (f"{rate[8]:,.0f} writes/s with 8 writers vs {rate[1]:,.0f} with one "
                   f"(ratio {fmt_ratio(rate[8] / rate[1])}); {locked} lock errors")
    fig.runs = settings.runs
    fig.notes += [
        f"each writer is a thread with its own keep-alive connection POSTing /api/clients (a row plus its "
        f"audit row per request) for {seconds:.0f} s straight to gunicorn; 1 and 8 writers alternate",
        f"`database is locked` in the app's log during the runs: {logged_locks}",
    ]
    if others:
        fig.notes.append("sample of other errors: " + "; ".join(others))
    return fig
