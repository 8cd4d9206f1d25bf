"""`montero stats`: numbers for the running stack, one snapshot at a time.

Three sources, all read-only:
- the Docker Engine API (docker SDK): per container CPU %, memory used/limit, network and block I/O,
  restart count, health;
- each app replica's `GET /metrics` (montero_api/metrics.py), read with `docker exec` inside the
  replica (`python` fetching http://127.0.0.1:5000/metrics): it needs no published port and works
  exactly where the metrics are meant to be readable, from inside the compose network;
- Redis `INFO` through `docker exec redis redis-cli` (its password, when the container has one,
  passed in the exec's environment, never on a command line or in the output).

Rates (requests/s, errors, 429s) and latency quantiles are differences between two scrapes of the
cumulative counters, so a snapshot carries the raw counters and the next one is computed against it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from montero_ops.errors import DockerUnavailable, StackNotRunning

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
APP_SERVICE = "app"
REDIS_SERVICE = "redis"
# The scrape asks the replica itself; the stats command's own requests to /metrics are not load.
_SCRAPE = (
    "import urllib.request,sys;"
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:5000/metrics',timeout=5).read().decode())"
)


# ------------------------------------------------------------------ Prometheus text


@dataclass
class Counters:
    """The cumulative numbers of one replica's /metrics that stats needs."""

    at: float
    requests: float = 0.0
    errors: float = 0.0  # 5xx
    rate_limited: float = 0.0  # 429
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count
    in_flight: float = 0.0


def _labels(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split('",'):
        name, _, value = part.partition("=")
        if name:
            out[name.strip().strip(",")] = value.strip().strip('"')
    return out


def parse_metrics(text: str, at: float) -> Counters:
    """Sum the request counters and latency buckets over every endpoint but /metrics itself."""
    counters = Counters(at=at)
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, raw = line.rpartition(" ")
        name, _, rest = head.partition("{")
        try:
            value = float(raw)
        except ValueError:
            continue
        labels = _labels(rest.rstrip("}")) if rest else {}
        if labels.get("endpoint") == "/metrics":
            continue
        if name == "montero_http_requests_total":
            counters.requests += value
            status = labels.get("status", "")
            if status.startswith("5"):
                counters.errors += value
            elif status == "429":
                counters.rate_limited += value
        elif name == "montero_http_request_duration_seconds_bucket":
            le = float(labels.get("le", "+Inf"))
            counters.buckets[le] = counters.buckets.get(le, 0.0) + value
        elif name == "montero_http_requests_in_flight":
            counters.in_flight += value
    return counters


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """histogram_quantile() as Prometheus computes it: linear inside the bucket that holds rank q."""
    edges = sorted(buckets)
    if not edges or buckets[edges[-1]] <= 0:
        return None
    total = buckets[edges[-1]]
    rank = q * total
    lower, below = 0.0, 0.0
    for edge in edges:
        count = buckets[edge]
        if count >= rank:
            if math.isinf(edge):
                return lower  # the highest finite bound, as Prometheus answers
            if count == below:
                return edge
            return lower + (edge - lower) * (rank - below) / (count - below)
        lower, below = edge, count
    return None


@dataclass
class Traffic:
    """Requests over the window between two scrapes (one replica, or the sum of all)."""

    requests_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    error_rate: float | None = None  # share of requests answered 5xx
    rate_limited_per_s: float | None = None
    in_flight: float | None = None


def traffic(previous: Counters | None, current: Counters) -> Traffic:
    if previous is None or current.at <= previous.at or current.requests < previous.requests:
        return Traffic(in_flight=current.in_flight)  # first scrape, or the replica restarted
    seconds = current.at - previous.at
    requests = current.requests - previous.requests
    window = {le: current.buckets.get(le, 0.0) - previous.buckets.get(le, 0.0) for le in current.buckets}
    p50, p99 = quantile(0.5, window), quantile(0.99, window)
    return Traffic(
        requests_per_s=round(requests / seconds, 2),
        p50_ms=None if p50 is None else round(p50 * 1000, 1),
        p99_ms=None if p99 is None else round(p99 * 1000, 1),
        error_rate=round((current.errors - previous.errors) / requests, 4) if requests else 0.0,
        rate_limited_per_s=round((current.rate_limited - previous.rate_limited) / seconds, 2),
        in_flight=current.in_flight,
    )


def summed(counters: list[Counters]) -> Counters | None:
    if not counters:
        return None
    total = Counters(at=min(c.at for c in counters))
    for c in counters:
        total.requests += c.requests
        total.errors += c.errors
        total.rate_limited += c.rate_limited
        total.in_flight += c.in_flight
        for le, v in c.buckets.items():
            total.buckets[le] = total.buckets.get(le, 0.0) + v
    return total


# ------------------------------------------------------------------ containers


def cpu_percent(stats: dict[str, Any]) -> float | None:
    """CPU % the way `docker stats` shows it (100 % = one CPU busy)."""
    cpu, pre = stats.get("cpu_stats") or {}, stats.get("precpu_stats") or {}
    try:
        used = cpu["cpu_usage"]["total_usage"] - pre["cpu_usage"]["total_usage"]
        system = cpu["system_cpu_usage"] - pre["system_cpu_usage"]
    except (KeyError, TypeError):
        return None
    cpus = cpu.get("online_cpus") or len(cpu["cpu_usage"].get("percpu_usage") or []) or 1
    if system <= 0 or used < 0:
        return 0.0
    return round(float(used) / float(system) * float(cpus) * 100.0, 2)


def memory(stats: dict[str, Any]) -> tuple[int | None, int | None]:
    mem = stats.get("memory_stats") or {}
    usage = mem.get("usage")
    if usage is None:
        return None, None
    detail = mem.get("stats") or {}
    cache = detail.get("inactive_file", detail.get("total_inactive_file", detail.get("cache", 0)))
    return int(usage - cache), mem.get("limit")


def io(stats: dict[str, Any]) -> dict[str, int]:
    rx = tx = read = written = 0
    for net in (stats.get("networks") or {}).values():
        rx += int(net.get("rx_bytes", 0))
        tx += int(net.get("tx_bytes", 0))
    for entry in (stats.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []:
        op = str(entry.get("op", "")).lower()
        if op == "read":
            read += int(entry.get("value", 0))
        elif op == "write":
            written += int(entry.get("value", 0))
    return {"net_rx_bytes": rx, "net_tx_bytes": tx, "block_read_bytes": read, "block_write_bytes": written}


@dataclass
class ContainerStats:
    service: str
    name: str
    state: str
    health: str | None
    restarts: int
    cpu_percent: float | None
    memory_bytes: int | None
    memory_limit_bytes: int | None
    net_rx_bytes: int
    net_tx_bytes: int
    block_read_bytes: int
    block_write_bytes: int
    traffic: Traffic | None = None  # app replicas only


@dataclass
class RedisStats:
    used_memory_bytes: int | None
    maxmemory_bytes: int | None
    memory_percent: float | None
    evicted_keys: int | None
    connected_clients: int | None
    error: str | None = None


@dataclass
class Snapshot:
    at: float
    containers: list[ContainerStats]
    app: Traffic | None  # summed over the replicas
    redis: RedisStats | None
    counters: dict[str, Counters] = field(default_factory=dict, repr=False)  # by container name

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("counters")
        return data


def parse_redis_info(text: str) -> RedisStats:
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            values[key] = value

    def number(key: str) -> int | None:
        try:
            return int(values[key])
        except (KeyError, ValueError):
            return None

    used, cap = number("used_memory"), number("maxmemory")
    percent = round(used / cap * 100, 2) if used is not None and cap else None
    return RedisStats(used, cap, percent, number("evicted_keys"), number("connected_clients"))


def _redis_password(container: Any) -> str | None:
    config = container.attrs.get("Config") or {}
    cmd = [str(c) for c in config.get("Cmd") or []]
    if "--requirepass" in cmd and cmd.index("--requirepass") + 1 < len(cmd):
        return cmd[cmd.index("--requirepass") + 1]
    for entry in config.get("Env") or []:
        name, _, value = str(entry).partition("=")
        if name in ("REDIS_PASSWORD", "REDISCLI_AUTH") and value:
            return value
    return None


def redis_info(container: Any) -> RedisStats:
    password = _redis_password(container)
    env = {"REDISCLI_AUTH": password} if password else None
    result = container.exec_run(["redis-cli", "INFO"], environment=env, demux=False)
    text = (result.output or b"").decode(errors="replace")
    if result.exit_code != 0 or "used_memory:" not in text:
        reason = (text.strip().splitlines() or ["no answer"])[0][:120]
        return RedisStats(None, None, None, None, None, error=f"redis-cli INFO failed: {reason}")
    return parse_redis_info(text)


def scrape(container: Any) -> Counters | None:
    result = container.exec_run(["python", "-c", _SCRAPE], demux=False)
    at = time.monotonic()
    if result.exit_code != 0:
        return None
    return parse_metrics((result.output or b"").decode(errors="replace"), at)


def _container_stats(container: Any) -> ContainerStats:
    labels = container.labels or {}
    state = container.attrs.get("State") or {}
    raw: dict[str, Any] = {}
    if state.get("Running"):
        raw = container.stats(stream=False)
    used, limit = memory(raw)
    counts = io(raw)
    return ContainerStats(
        service=labels.get(SERVICE_LABEL, "?"),
        name=container.name,
        state=str(state.get("Status", "unknown")),
        health=(state.get("Health") or {}).get("Status"),
        restarts=int(container.attrs.get("RestartCount", 0)),
        cpu_percent=cpu_percent(raw),
        memory_bytes=used,
        memory_limit_bytes=limit,
        net_rx_bytes=counts["net_rx_bytes"],
        net_tx_bytes=counts["net_tx_bytes"],
        block_read_bytes=counts["block_read_bytes"],
        block_write_bytes=counts["block_write_bytes"],
    )


class StatsReader:
    """Holds the docker client and the previous scrape, so each snapshot has rates over its window."""

    def __init__(self, project: str, client_factory: Callable[[], Any] | None = None) -> None:
        self.project = project
        self._factory = client_factory
        self._client: Any = None
        self._previous: dict[str, Counters] = {}

    def client(self) -> Any:
        if self._client is None:
            if self._factory is not None:
                self._client = self._factory()
            else:
                # Lazily: `montero --help`, `ps` and `health` never pay for the docker SDK.
                # mypy run from the repository root sees ./docker (the compose files) as a namespace package.
                from docker.client import from_env  # type: ignore[import-not-found,unused-ignore]
                from docker.errors import DockerException  # type: ignore[import-not-found,unused-ignore]

                try:
                    self._client = from_env()
                    self._client.ping()
                except DockerException as exc:
                    raise DockerUnavailable(
                        "cannot reach the Docker daemon", hint="start Docker (or check DOCKER_HOST) and retry"
                    ) from exc
        return self._client

    def _scrape_apps(self, apps: list[Any]) -> dict[str, Counters]:
        with ThreadPoolExecutor(max(1, len(apps))) as pool:
            found = dict(zip((c.name for c in apps), pool.map(scrape, apps), strict=True))
        return {name: c for name, c in found.items() if c is not None}

    def snapshot(self, window: float = 1.0) -> Snapshot:
        """One snapshot. The first one scrapes twice, `window` seconds apart, to have rates at once."""
        containers = self.client().containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"})
        if not containers:
            raise StackNotRunning()
        running = [c for c in containers if (c.attrs.get("State") or {}).get("Running")]
        apps = [c for c in running if (c.labels or {}).get(SERVICE_LABEL) == APP_SERVICE]
        if not self._previous and apps:
            self._previous = self._scrape_apps(apps)
            start = time.monotonic()
        else:
            start = time.monotonic() - window
        with ThreadPoolExecutor(min(8, len(containers))) as pool:
            rows = list(pool.map(_container_stats, containers))  # ~1 s: the engine samples CPU twice
        redis_container = next((c for c in running if (c.labels or {}).get(SERVICE_LABEL) == REDIS_SERVICE), None)
        redis = redis_info(redis_container) if redis_container is not None else None
        remaining = window - (time.monotonic() - start)
        if remaining > 0 and apps:
            time.sleep(remaining)
        current = self._scrape_apps(apps) if apps else {}
        for row in rows:
            if row.name in current:
                row.traffic = traffic(self._previous.get(row.name), current[row.name])
        total_now = summed(list(current.values()))
        total_before = summed([self._previous[n] for n in current if n in self._previous])
        app = traffic(total_before, total_now) if total_now is not None else None
        self._previous = current
        rows.sort(key=lambda r: (r.service, r.name))
        return Snapshot(at=time.time(), containers=rows, app=app, redis=redis, counters=current)
