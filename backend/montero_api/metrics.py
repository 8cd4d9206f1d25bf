"""GET /metrics: Prometheus text format, summed over every gunicorn worker.

Under gunicorn, gunicorn.conf.py points PROMETHEUS_MULTIPROC_DIR at a tmpfs folder it clears at start
(before prometheus_client is first imported, which is when the library picks its storage), and marks
exited workers dead. Each worker then writes its values to mmap files there, and a scrape of any worker
reads all of them (MultiProcessCollector). Without that variable (flask's test client, `flask` commands)
the numbers are this process's own.

Labels are bounded: the endpoint is the URL rule template (`/api/clients/<int:client_id>`, or
"unmatched"), the method one of the HTTP verbs or "other", the status a number. Never a user, an
e-mail, a token or a raw path.

Not public: nginx does not proxy /metrics, and the app refuses it (404) when the request came through
a proxy (X-Forwarded-For present), so only a client on the compose network (Prometheus, `montero stats`
through `docker exec`) reads it.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _multiprocess
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from . import __version__
from .errors import error_response

# Created once per process (module import): create_app may run several times in one process (tests).
REQUESTS = Counter(
    "montero_http_requests_total", "HTTP requests answered, by method, endpoint template and status.",
    ["method", "endpoint", "status"],
)
LATENCY = Histogram(
    "montero_http_request_duration_seconds", "Time to answer a request, by method and endpoint template.",
    ["method", "endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
IN_FLIGHT = Gauge(
    "montero_http_requests_in_flight", "Requests being answered right now.", multiprocess_mode="livesum"
)
RATE_LIMITED = Counter("montero_rate_limited_total", "Requests refused with 429, by endpoint template.", ["endpoint"])
LOGIN_FAILURES = Counter("montero_login_failures_total", "Refused logins (bad e-mail or password, inactive user).")
DB_ERRORS = Counter("montero_db_errors_total", "Database driver errors (integrity conflicts excluded).")
REDIS_DEGRADED = Gauge(
    "montero_redis_degraded",
    "1 when the rate-limit storage (Redis) is unreachable and limits fall back to per-process memory.",
    multiprocess_mode="livemax",
)
APP_INFO = Gauge(
    "montero_app_info", "Always 1; the labels carry the app version and the database revision.",
    ["version", "revision"], multiprocess_mode="livemax",
)

DATA_DISK = Gauge(
    "montero_data_disk_used_ratio",
    "Share of the filesystem holding the SQLite database (./data) in use, read at scrape time.",
    multiprocess_mode="livemax",
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LOGIN_ENDPOINT = "auth.login"


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def _labels() -> tuple[str, str]:
    method = request.method if request.method in _METHODS else "other"
    rule = request.url_rule
    return method, (rule.rule if rule is not None else "unmatched")


def _start() -> None:
    g.montero_metrics_start = time.perf_counter()
    IN_FLIGHT.inc()


def _record(response: Response) -> Response:
    start: float | None = g.get("montero_metrics_start")
    method, endpoint = _labels()
    REQUESTS.labels(method, endpoint, str(response.status_code)).inc()
    if start is not None:
        LATENCY.labels(method, endpoint).observe(time.perf_counter() - start)
    if response.status_code == 429:
        RATE_LIMITED.labels(endpoint).inc()
    elif request.endpoint == _LOGIN_ENDPOINT and response.status_code == 401:
        LOGIN_FAILURES.inc()
    return response


def _finish(exc: BaseException | None) -> None:
    if g.pop("montero_metrics_start", None) is not None:
        IN_FLIGHT.dec()


@event.listens_for(Engine, "handle_error")
def _count_db_error(context: Any) -> None:
    if not isinstance(context.sqlalchemy_exception, IntegrityError):
        DB_ERRORS.inc()


def _scrape_state(limiter: Limiter) -> None:
    """Values read at scrape time by the answering worker: Redis reachability, app/db revision."""
    from .health import database_status, redis_status

    settings = current_app.config["MONTERO_SETTINGS"]
    redis = redis_status(limiter, settings)
    REDIS_DEGRADED.set(1 if redis["status"] == "down" else 0)
    database = database_status()
    APP_INFO.labels(__version__, str(database.get("revision") or "none")).set(1)
    url = str(settings.DATABASE_URL)
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        try:
            usage = shutil.disk_usage(os.path.dirname(url[len("sqlite:///"):]) or ".")
            DATA_DISK.set(usage.used / usage.total if usage.total else 0.0)
        except OSError:
            pass


def render() -> bytes:
    directory = multiprocess_dir()
    if directory:
        registry = CollectorRegistry()
        _multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def init_app(app: Flask, limiter: Limiter) -> None:
    if os.environ.get("MONTERO_METRICS", "on").strip().lower() in ("off", "0", "false", "no"):
        return  # no hooks and no /metrics (404): the baseline of bench/metrics_overhead.py
    # First in line, so the latency includes Flask-Limiter's own before_request work (and a 429 it raises).
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request(_record)
    app.teardown_request(_finish)

    bp = Blueprint("metrics", __name__)

    @limiter.request_filter
    def _metrics_is_never_limited() -> bool:
        return request.path == "/metrics"

    @bp.get("/metrics")
    def metrics() -> ResponseReturnValue:
        if request.headers.get("X-Forwarded-For"):
            # Came through a proxy (nginx): not for the public.
            return error_response(404, "The requested URL was not found on the server.")
        _scrape_state(limiter)
        return Response(render(), mimetype=CONTENT_TYPE_LATEST)

    app.register_blueprint(bp)
