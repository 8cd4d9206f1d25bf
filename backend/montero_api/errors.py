"""One JSON error shape for every failure: {"error": {"status", "code", "message", "fields"?}}.

No HTML error pages and no tracebacks reach clients; unexpected exceptions are logged with their
traceback server-side and answered with a generic 500.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from flask_limiter import RateLimitExceeded
from sqlalchemy.exc import DBAPIError, IntegrityError
from werkzeug.exceptions import HTTPException

log = logging.getLogger("montero_api")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


class APIError(Exception):
    """An expected failure with its HTTP status; raise from views and helpers."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or _CODES.get(status, "error")
        self.fields = fields
        self.headers = headers or {}


def error_response(status: int, message: str, code: str | None = None, **extra: Any) -> tuple[Response, int]:
    body: dict[str, Any] = {"status": status, "code": code or _CODES.get(status, "error"), "message": message}
    body.update({k: v for k, v in extra.items() if v is not None})
    return jsonify(error=body), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(APIError)
    def _api_error(exc: APIError) -> tuple[Response, int]:
        response, status = error_response(exc.status, exc.message, exc.code, fields=exc.fields)
        response.headers.update(exc.headers)
        return response, status

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded) -> tuple[Response, int]:
        response, status = error_response(429, f"Too many requests: limit is {exc.description}. Try again later.")
        return response, status

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"Request body is larger than the {limit} bytes allowed."
        response, status = error_response(status, message)
        if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response, status

    @app.errorhandler(IntegrityError)
    def _integrity(exc: IntegrityError) -> tuple[Response, int]:
        return error_response(409, "The change conflicts with existing data.")

    @app.errorhandler(DBAPIError)
    def _db_unavailable(exc: DBAPIError) -> tuple[Response, int]:
        # Unreachable, corrupt or unmigrated database: the client can only retry later.
        log.error("database error: %s", str(exc.orig).splitlines()[0] if exc.orig else exc)
        return error_response(503, "The database is unavailable; try again shortly.")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "Internal server error.")
