"""Logging: one line per event to stdout (docker logs) and to the shared file under LOG_DIR.

The file is rotated by the gunicorn master only (montero_api/logfiles.py says why).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from flask import Flask, Response, g, request

from .logfiles import LOG_FILE, SharedFileHandler
from .settings import Settings

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


class ZoneFormatter(logging.Formatter):
    """Timestamps in the stack's TZ (America/Bogota by default) without touching the process clock."""

    def __init__(self, tz: str) -> None:
        super().__init__(FORMAT)
        self.zone = ZoneInfo(tz)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return dt.datetime.fromtimestamp(record.created, self.zone).isoformat(timespec="milliseconds")


def configure_logging(app: Flask, settings: Settings) -> None:
    logger = logging.getLogger("montero_api")
    logger.setLevel(settings.LOG_LEVEL.upper())
    logger.propagate = False
    for handler in list(logger.handlers):  # a second create_app in one process must not double lines
        logger.removeHandler(handler)
        handler.close()
    formatter = ZoneFormatter(settings.TZ)
    stream = logging.StreamHandler(sys.stdout)
    stream.setFormatter(formatter)
    logger.addHandler(stream)
    try:
        Path(settings.LOG_DIR).mkdir(parents=True, exist_ok=True)
        # Append only: the gunicorn master rotates (LOG_MAX_BYTES x LOG_BACKUPS), never a worker.
        file_handler = SharedFileHandler(os.path.join(settings.LOG_DIR, LOG_FILE), encoding="utf-8")
        file_handler.setFormatter(formatter)
        logger.addHandler(file_handler)
    except OSError as exc:
        logger.warning("file logging disabled: cannot write to LOG_DIR %s (%s)", settings.LOG_DIR, exc)
    app.logger.handlers = logger.handlers
    app.logger.setLevel(logger.level)
    _log_requests(app, logger)


def _log_requests(app: Flask, logger: logging.Logger) -> None:
    access = logger.getChild("request")

    @app.before_request
    def _start_timer() -> None:
        g.request_started = time.perf_counter()

    @app.after_request
    def _log_request(response: Response) -> Response:
        # A passing health probe (Docker's healthcheck, nginx, monitors) is logged at
        # DEBUG: at INFO these lines buried real requests and were a fifth of a worker's
        # time under a probe load (py-spy, docs/benchmarks.md figure 7). A failing probe
        # (503) is logged like any request.
        level = logging.DEBUG if response.status_code == 200 and request.path == "/health" else logging.INFO
        if not access.isEnabledFor(level):
            return response
        started = g.get("request_started")
        elapsed = (time.perf_counter() - started) * 1000 if started else 0.0
        auth = g.get("auth_session")
        try:
            who = auth.user.email if auth is not None else "-"
        except Exception:  # noqa: BLE001 - a failed transaction must not also lose the request's log line
            who = "?"
        access.log(
            level,
            "%s %s %s %.1fms %s %s",
            request.method,
            request.path,
            response.status_code,
            elapsed,
            request.remote_addr or "-",
            who,
        )
        return response
