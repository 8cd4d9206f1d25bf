"""montero stats: the arithmetic on /metrics text, Engine stats and Redis INFO (the real sources are in
tests/e2e/test_stats_e2e.py), and its bad-input line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import Result

from montero_ops.services.stats import (
    Counters,
    cpu_percent,
    memory,
    parse_metrics,
    parse_redis_info,
    quantile,
    summed,
    traffic,
)

METRICS = """# HELP montero_http_requests_total HTTP requests answered.
# TYPE montero_http_requests_total counter
montero_http_requests_total{endpoint="/health",method="GET",status="200"} 90.0
montero_http_requests_total{endpoint="/api/clients",method="GET",status="503"} 4.0
montero_http_requests_total{endpoint="/api/auth/login",method="POST",status="429"} 6.0
montero_http_requests_total{endpoint="/metrics",method="GET",status="200"} 50.0
montero_http_request_duration_seconds_bucket{endpoint="/health",le="0.01",method="GET"} 50.0
montero_http_request_duration_seconds_bucket{endpoint="/health",le="0.1",method="GET"} 90.0
montero_http_request_duration_seconds_bucket{endpoint="/health",le="+Inf",method="GET"} 90.0
montero_http_request_duration_seconds_bucket{endpoint="/api/clients",le="0.01",method="GET"} 0.0
montero_http_request_duration_seconds_bucket{endpoint="/api/clients",le="0.1",method="GET"} 10.0
montero_http_request_duration_seconds_bucket{endpoint="/api/clients",le="+Inf",method="GET"} 10.0
montero_http_request_duration_seconds_bucket{endpoint="/metrics",le="0.01",method="GET"} 50.0
montero_http_requests_in_flight 1.0
"""


def test_parse_metrics_sums_endpoints_but_not_the_scrapes_themselves() -> None:
    c = parse_metrics(METRICS, at=10.0)
    assert c.requests == 100.0
    assert c.errors == 4.0
    assert c.rate_limited == 6.0
    assert c.buckets == {0.01: 50.0, 0.1: 100.0, float("inf"): 100.0}
    assert c.in_flight == 1.0


def test_quantile_interpolates_like_prometheus() -> None:
    buckets = {0.01: 50.0, 0.1: 100.0, float("inf"): 100.0}
    assert quantile(0.5, buckets) == pytest.approx(0.01)
    assert quantile(0.99, buckets) == pytest.approx(0.01 + 0.09 * 49 / 50)
    assert quantile(0.5, {0.1: 0.0, float("inf"): 0.0}) is None
    assert quantile(0.99, {0.1: 0.0, float("inf"): 5.0}) == 0.1  # all above the last finite bound


def test_traffic_is_the_difference_over_the_window() -> None:
    before = Counters(at=0.0, requests=100, errors=1, rate_limited=0, buckets={0.01: 100.0, float("inf"): 100.0})
    after = Counters(at=2.0, requests=300, errors=3, rate_limited=10, buckets={0.01: 200.0, float("inf"): 300.0})
    t = traffic(before, after)
    assert t.requests_per_s == 100.0
    assert t.error_rate == 0.01
    assert t.rate_limited_per_s == 5.0
    assert t.p50_ms == 10.0  # rank 100 of 200 sits at the 10 ms bound
    # No previous scrape, or a restarted replica (counters went down): no rates rather than wrong ones.
    assert traffic(None, after).requests_per_s is None
    assert traffic(after, before).requests_per_s is None
    total = summed([before, after])
    assert total is not None and total.requests == 400 and total.buckets[0.01] == 300.0


def test_cpu_and_memory_like_docker_stats() -> None:
    stats = {
        "cpu_stats": {"cpu_usage": {"total_usage": 3_000}, "system_cpu_usage": 20_000, "online_cpus": 2},
        "precpu_stats": {"cpu_usage": {"total_usage": 1_000}, "system_cpu_usage": 10_000},
        "memory_stats": {"usage": 100 << 20, "limit": 1 << 30, "stats": {"inactive_file": 20 << 20}},
    }
    assert cpu_percent(stats) == 40.0
    assert memory(stats) == (80 << 20, 1 << 30)
    assert cpu_percent({}) is None
    assert memory({}) == (None, None)


def test_redis_info() -> None:
    info = "# Memory\r\nused_memory:134217728\r\nmaxmemory:268435456\r\n# Stats\r\nevicted_keys:7\r\nconnected_clients:3\r\n"
    r = parse_redis_info(info)
    assert (r.used_memory_bytes, r.maxmemory_bytes, r.memory_percent) == (134217728, 268435456, 50.0)
    assert (r.evicted_keys, r.connected_clients) == (7, 3)


def test_stats_refuses_a_too_short_interval(cli: Callable[..., Result], project: Path) -> None:
    result = cli("--project-dir", str(project), "stats", "--interval", "0.1")
    assert result.exit_code == 2
    assert "--interval 0.1 is too short" in result.stderr
    assert "Traceback" not in result.output


def test_live_stats_off_a_terminal_prints_whole_tables_and_ctrl_c_is_130(
        cli: Callable[..., Result], project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Piped (not a TTY): one plain table per interval, no cursor movement or colour codes; Ctrl-C
    ends it with 130 and one line, no traceback. The engine is the boundary replaced here (the e2e
    test reads a real one, and drives the live view in tmux)."""
    from montero_ops.services.stats import ContainerStats, RedisStats, Snapshot, StatsReader, Traffic
    from montero_ops.state import State

    calls: list[float] = []

    def snapshot(self: StatsReader, window: float = 1.0) -> Snapshot:
        calls.append(window)
        if len(calls) == 3:
            raise KeyboardInterrupt
        app = ContainerStats("app", "shop-app-1", "running", "healthy", 0, 12.5, 50 * 2**20, 512 * 2**20,
                             1000 * len(calls), 2000, 0, 0,
                             Traffic(40.0 + len(calls), 3.0, 9.0, 0.0, 0.0, 1.0))
        return Snapshot(at=0.0, containers=[app], app=app.traffic,
                        redis=RedisStats(2**20, 256 * 2**20, 0.4, 0, 2))

    monkeypatch.setattr(StatsReader, "snapshot", snapshot)
    monkeypatch.setattr(State, "docker", lambda self, check=True: type("D", (), {"sdk": None})())
    result = cli("--project-dir", str(project), "stats", "--interval", "0.5")
    assert result.exit_code == 130, result.output
    assert calls == [0.5, 0.5, 0.5]  # a plain table per interval until Ctrl-C
    assert result.stdout.count("REQ/S") == 2 and "shop-app-1" in result.stdout
    assert "41" in result.stdout and "42" in result.stdout  # each table is its own snapshot
    assert "\x1b[" not in result.stdout  # no redraws, no colours: what a pipe or a log wants
    assert result.stderr.strip().splitlines() == ["Interrupted."]
