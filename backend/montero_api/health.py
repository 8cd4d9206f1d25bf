"""GET /health: ok | degraded (rate-limit storage down, in-memory fallback) | fail (database down, 503)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from flask import Blueprint, current_app, jsonify, request
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter

from . import __version__
from .database import get_db
from .settings import Settings

log = logging.getLogger("montero_api.health")


def database_status() -> dict[str, Any]:
    db = get_db()
    # The pool's DBAPI connection, not a SQLAlchemy Connection: the query is the check,
    # and Core's transaction and result machinery around it was most of the check's
    # cost (py-spy, docs/benchmarks.md figure 7). One query on the healthy path; only
    # when it fails does a SELECT 1 tell "database down" (raises) from "never migrated".
    try:
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                cursor.execute("SELECT version_num FROM alembic_version")
                row = cursor.fetchone()
                revision = row[0] if row else None
            except Exception:  # noqa: BLE001 - the table may be missing
                raw.rollback()
                cursor.execute("SELECT 1")
                revision = None
            finally:
                cursor.close()
        finally:
            raw.close()  # back to the pool (rolled back there)
    except Exception as exc:  # noqa: BLE001 - any driver error is a failed check, reported not raised
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
        log.error("health: database check failed: %s", reason)
        return {"status": "fail", "backend": db.engine.dialect.name, "error": reason}
    if revision is None:
        return {
            "status": "fail",
            "backend": db.engine.dialect.name,
            "revision": None,
            "error": "schema not migrated: run `alembic upgrade head`",
        }
    return {"status": "ok", "backend": db.engine.dialect.name, "revision": revision}


# A PING per /health request was 46% of a worker's time under load (py-spy, bench figure 7).
# A healthy answer is reused for this long per worker. A failed one is reused too, a little longer:
# with redis-server hung (SIGSTOP) every probe paid the 1 s socket timeout, and a /health flood (exempt
# from limits) then starved the workers. Recovery shows within REDIS_FAIL_REUSE_SECONDS.
REDIS_OK_REUSE_SECONDS = 1.0
REDIS_FAIL_REUSE_SECONDS = 5.0
# (alive, reuse until) per limiter; plus the last state reported, so the log says each transition once.
_redis_cache: dict[int, tuple[bool, float]] = {}
_redis_reported: dict[int, bool] = {}
_probe_lock = threading.Lock()


def _redis_alive(limiter: Limiter) -> bool:
    key = id(limiter)
    now = time.monotonic()
    cached = _redis_cache.get(key)
    if cached is not None and cached[1] > now:
        return cached[0]
    # One probe at a time per process (gthread workers): the others reuse the last answer meanwhile.
    if not _probe_lock.acquire(blocking=False):
        return cached[0] if cached is not None else True
    try:
        error = ""
        try:
            alive = bool(limiter.storage.check())
        except Exception as exc:  # noqa: BLE001
            alive, error = False, str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        _redis_cache[key] = (alive, time.monotonic() + (REDIS_OK_REUSE_SECONDS if alive else REDIS_FAIL_REUSE_SECONDS))
        _report_transition(key, alive, error)
    finally:
        _probe_lock.release()
    return alive


def _report_transition(key: int, alive: bool, error: str) -> None:
    previous = _redis_reported.get(key, True)
    _redis_reported[key] = alive
    if previous and not alive:
        log.warning(
            "health: degraded: Redis (rate-limit storage) unreachable%s; rate limits are per process until it is back",
            f" ({error})" if error else "",
        )
    elif not previous and alive:
        log.warning("health: Redis (rate-limit storage) reachable again; status ok")


def redis_status(limiter: Limiter, settings: Settings) -> dict[str, Any]:
    if not settings.RATELIMIT_STORAGE_URL:
        return {"status": "disabled", "rate_limit_storage": "memory"}
    alive = _redis_alive(limiter)
    if alive:
        return {"status": "ok", "rate_limit_storage": "redis"}
    return {
        "status": "down",
        "rate_limit_storage": "memory (fallback)",
        "error": "Redis unreachable; rate limits are per process until it is back",
    }


def build_blueprint(limiter: Limiter, settings: Settings) -> Blueprint:
    bp = Blueprint("health", __name__)

    # Exempt before Flask-Limiter resolves any limit: `@limiter.exempt` alone is checked
    # only after that work, 6% of a worker's time on /health (py-spy, bench figure 7).
    @limiter.request_filter
    def _health_is_never_limited() -> bool:
        return request.path == "/health"

    @bp.get("/health")
    @limiter.exempt
    def health() -> ResponseReturnValue:
        database = database_status()
        redis = redis_status(limiter, current_app.config["MONTERO_SETTINGS"])
        if database["status"] != "ok":
            status, code = "fail", 503
        elif redis["status"] == "down":
            status, code = "degraded", 200
        else:
            status, code = "ok", 200
        return jsonify(status=status, database=database, redis=redis, version=__version__), code

    return bp
