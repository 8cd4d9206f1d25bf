"""`--profile monitoring` on a real engine: production + monitoring with 3 app replicas. Prometheus
(Debian's package, image built on the local base) finds the replicas by Docker DNS; after a load loop
its sum(rate()) matches the load within 10 %; stopping a replica fires AppReplicaDown, starting it
again clears it. With no backup yet BackupStale fires and a real `montero backup` clears it; a
certificate with 10 days left fires CertificateExpiresSoon (read from nginx's TLS handshake by the
blackbox exporter) and a renewed one clears it. Prometheus is published on loopback only."""

from __future__ import annotations

import json
import secrets
import ssl
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest
from conftest import free_port_block
from dotenv import dotenv_values

pytestmark = pytest.mark.lane2  # ~3 min: beside the cluster tests (scripts/test.sh)

REPLICAS = 3


def prom(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def scalar(port: int, query: str, at: float | None = None) -> float | None:
    params = {"query": query} if at is None else {"query": query, "time": f"{at:.3f}"}
    result = prom(port, "/api/v1/query", **params)["result"]
    return float(result[0]["value"][1]) if result else None


def wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError as exc:
            last = exc
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what} (last: {last})")


def firing(port: int, name: str) -> bool:
    return any(a["labels"]["alertname"] == name and a["state"] == "firing"
               for a in prom(port, "/api/v1/alerts")["alerts"])


def doctor_alerts(stack: Any) -> dict[str, Any]:
    """`montero doctor --json`'s monitoring finding (doctor finds the prometheus container itself)."""
    done = stack.run_montero("doctor", "--json", timeout=180)
    findings = json.loads(done.stdout)
    found = [f for f in findings if f["id"] == "monitoring.alerts"]
    assert len(found) == 1, findings
    return dict(found[0])


def stats_snapshot(stack: Any) -> dict[str, Any]:
    done = stack.run_montero("stats", "--once", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    secrets_in_env = [v for k, v in dotenv_values(stack.root / ".env").items()
                      if v and k in ("SECRET_KEY", "REDIS_PASSWORD")]
    assert secrets_in_env and not [v for v in secrets_in_env if v in done.stdout + done.stderr]
    return dict(json.loads(done.stdout))


def check_stats(stack: Any, snapshot: dict[str, Any]) -> None:
    """`montero stats --once --json` on the production + monitoring stack: every container, with numbers."""
    ids = stack.compose("ps", "-q").stdout.split()
    rows = snapshot["containers"]
    assert len(rows) == len(ids) >= REPLICAS + 7, [r["name"] for r in rows]  # + redis, nginx, 5 monitoring
    assert {r["service"] for r in rows} >= {"app", "redis", "nginx", "prometheus", "redis-exporter",
                                            "nginx-exporter", "blackbox-exporter", "backup-exporter"}
    for r in rows:
        assert r["state"] == "running" and r["restarts"] == 0, r
        assert isinstance(r["cpu_percent"], float) and r["cpu_percent"] >= 0, r
        assert r["memory_bytes"] > 0 and r["memory_limit_bytes"] >= r["memory_bytes"], r
        assert r["net_rx_bytes"] > 0 and r["net_tx_bytes"] > 0, r
        assert r["health"] in (None, "healthy"), r
    apps = [r for r in rows if r["service"] == "app"]
    assert len(apps) == REPLICAS
    for r in apps:
        assert r["traffic"]["requests_per_s"] > 0, r  # nginx spreads the load over every replica
        assert r["traffic"]["p99_ms"] >= r["traffic"]["p50_ms"] > 0, r
    assert snapshot["app"]["requests_per_s"] > 5, snapshot["app"]
    assert snapshot["redis"]["error"] is None and snapshot["redis"]["maxmemory_bytes"] > 0, snapshot["redis"]


def test_prometheus_follows_the_load_and_the_replicas(stack_project: Any, stack_env: dict[str, str]) -> None:
    stack = stack_project
    port = free_port_block(1)
    stack.write_env(
        SECRET_KEY=secrets.token_hex(32),
        MONTERO_MONITORING_BASE_IMAGE=stack_env["MONTERO_PYTHON_IMAGE"],
        MONTERO_MONITORING_IMAGE="montero-monitoring:e2e-h-metrics",
        MONTERO_PROMETHEUS_PORT=str(port),
        DEFAULT_RATE_LIMIT="1000000 per minute",
    )
    stack.compose_files += [stack.root / "docker" / "compose.production.yml",
                            stack.root / "docker" / "compose.monitoring.yml"]
    stack.profiles += ["production", "monitoring"]  # the fixture's `down` then removes them too
    short = stack.run_montero("tls", "self-signed", "--days", "10", timeout=60)
    assert short.returncode == 0, short.stderr
    built = stack.compose("build", "prometheus", timeout=900)
    assert built.returncode == 0, built.stderr[-3000:]
    # What a user types: montero up with both profiles, scaled (it waits for every healthcheck).
    done = stack.run_montero("up", "--profile", "production", "--profile", "monitoring",
                             "--scale", f"app={REPLICAS}", "--timeout", "300", timeout=900)
    assert done.returncode == 0, f"{done.stderr[-2000:]}\n{stack.logs()}"

    # Loopback only.
    published = stack.compose("port", "prometheus", "9090").stdout.strip()
    assert published == f"127.0.0.1:{port}", published
    wait(lambda: scalar(port, 'count(up{job="app"} == 1)') == REPLICAS, 90, "3 app targets up")
    wait(lambda: scalar(port, 'redis_up') == 1, 60, "the redis exporter")
    wait(lambda: scalar(port, 'nginx_up') == 1, 60, "the nginx exporter")

    # No backup yet and a certificate with 10 days left: both alerts fire without any `for:` delay.
    wait(lambda: firing(port, "BackupStale"), 60, "BackupStale firing (no backup yet)")
    days_left = wait(lambda: scalar(port, 'min(probe_ssl_earliest_cert_expiry) - time()'), 60,
                     "the served certificate's expiry")
    assert 9 * 86400 < days_left <= 10 * 86400, days_left
    wait(lambda: firing(port, "CertificateExpiresSoon"), 60, "CertificateExpiresSoon firing")
    assert not firing(port, "BackupFolderUnreadable")
    backed_up = stack.run_montero("backup", timeout=300)
    assert backed_up.returncode == 0, backed_up.stderr
    renewed = stack.run_montero("tls", "self-signed", "--days", "90", timeout=60)
    assert renewed.returncode == 0, renewed.stderr

    # Steady load through nginx; every answer's time is kept to compute the client's own rate.
    stamps: list[float] = []
    stop = threading.Event()
    # With a certificate nginx redirects HTTP to HTTPS: load the HTTPS server, trusting the pair.
    url = f"https://127.0.0.1:{stack.https_port}/health"
    tls = ssl.create_default_context(cafile=str(stack.root / "docker" / "certs" / "fullchain.pem"))

    def load() -> None:
        while not stop.is_set():
            try:
                with urllib.request.urlopen(url, timeout=10, context=tls) as r:
                    if r.status == 200:
                        stamps.append(time.time())
            except OSError:
                # Until nginx has reloaded onto the renewed pair it still serves the old certificate;
                # a dead thread would silently thin the load, so the thread keeps going.
                time.sleep(0.2)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(50)
    at = time.time() - 10  # scraped every 5 s: leave Prometheus time to have the window's samples
    # Under the same load, after the window Prometheus is asked about: one `montero stats` snapshot.
    snapshot = stats_snapshot(stack)
    time.sleep(max(0.0, at + 12 - time.time()))
    stop.set()
    for t in threads:
        t.join(timeout=15)
    window = 30.0
    client_rate = sum(1 for s in stamps if at - window < s <= at) / window
    query = f'sum(rate(montero_http_requests_total{{endpoint="/health",status="200"}}[{int(window)}s]))'
    prom_rate = scalar(port, query, at=at)
    assert prom_rate is not None and client_rate > 5, (prom_rate, client_rate)
    print(f"load {client_rate:.1f} req/s, Prometheus sum(rate()) {prom_rate:.1f} req/s")
    assert abs(prom_rate - client_rate) <= 0.10 * client_rate, (prom_rate, client_rate)
    check_stats(stack, snapshot)

    # A replica stops: the alert fires; it starts again: the alert clears.
    victim = f"{stack.name}-app-{REPLICAS}"
    subprocess.run(["docker", "stop", "-t", "5", victim], check=True, capture_output=True, timeout=60)
    try:
        wait(lambda: firing(port, "AppReplicaDown"), 120, "AppReplicaDown firing")
        assert "AppReplicaDown" in doctor_alerts(stack)["message"]
    finally:
        subprocess.run(["docker", "start", victim], check=True, capture_output=True, timeout=60)
    wait(lambda: scalar(port, 'count(up{job="app"} == 1)') == REPLICAS, 120, "the replica back")
    wait(lambda: not firing(port, "AppReplicaDown"), 120, "AppReplicaDown cleared")
    # Checked last: the backup and the new certificate have long been scraped by now.
    wait(lambda: not firing(port, "BackupStale"), 60, "BackupStale cleared by `montero backup`")
    wait(lambda: not firing(port, "CertificateExpiresSoon"), 60, "CertificateExpiresSoon cleared")
    assert scalar(port, "max(montero_backups)") == 1
    message = doctor_alerts(stack)["message"]
    assert "AppReplicaDown" not in message and "BackupStale" not in message, message
