"""The application factory, in named steps."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from werkzeug.middleware.proxy_fix import ProxyFix

from . import affiliations, audit, auth, clients, database, health, metrics, pages
from .bodylimit import ChunkedBodyLimit
from .commands import register_commands
from .errors import register_error_handlers
from .headers import register_security_headers
from .logging_setup import configure_logging
from .settings import Settings


def create_app(overrides: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. `overrides` take precedence over the environment (setting names, or Flask config keys).

    Raises settings.ConfigError (one line: what is wrong and how to fix it) when the settings cannot run.
    """
    settings = Settings.from_env(overrides=overrides)
    app = Flask("montero_api")
    configure_app(app, settings, overrides or {})
    configure_logging(app, settings)
    if not settings.SECRET_KEY:
        app.logger.warning("SECRET_KEY is not set: using a development-only key (never do this in production)")
    limiter = init_extensions(app, settings)
    register_blueprints(app, limiter, settings)
    metrics.init_app(app, limiter)  # request counters and GET /metrics (montero_api/metrics.py)
    register_error_handlers(app)
    register_security_headers(app)
    register_commands(app)
    app.logger.info(
        "montero_api ready (env=%s, database=%s, rate limits=%s)",
        settings.FLASK_ENV,
        settings.redacted()["DATABASE_URL"],
        "redis" if settings.RATELIMIT_STORAGE_URL else "memory",
    )
    return app


def configure_app(app: Flask, settings: Settings, overrides: Mapping[str, Any]) -> None:
    app.config.update(
        MONTERO_SETTINGS=settings,
        SECRET_KEY=settings.effective_secret_key,
        MAX_CONTENT_LENGTH=settings.MAX_CONTENT_LENGTH,
        DEBUG=False,
    )
    app.config.update({k: v for k, v in overrides.items() if not hasattr(settings, k)})
    app.json.sort_keys = False  # type: ignore[attr-defined]  # keep "status" first, as written
    app.wsgi_app = ChunkedBodyLimit(app.wsgi_app, settings.MAX_CONTENT_LENGTH)  # type: ignore[method-assign]
    if settings.TRUSTED_PROXY_COUNT > 0:
        # Behind nginx the client address comes from X-Forwarded-For; trusting it without a proxy would
        # let anyone choose their own rate-limit bucket, hence opt-in.
        n = settings.TRUSTED_PROXY_COUNT
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n, x_prefix=n)  # type: ignore[method-assign]


def init_extensions(app: Flask, settings: Settings) -> Limiter:
    database.init_app(app, settings.DATABASE_URL, settings.SQLITE_BUSY_TIMEOUT_MS)
    storage_options: dict[str, Any] = {}
    if settings.RATELIMIT_STORAGE_URL and settings.RATELIMIT_STORAGE_URL.startswith(("redis://", "rediss://")):
        # Fail fast when Redis is down so the in-memory fallback kicks in instead of hanging requests.
        storage_options = {"socket_connect_timeout": 1, "socket_timeout": 1}
    # One Limiter per app (not a module global): its storage belongs to the app it was initialised with.
    limiter = Limiter(
        key_func=get_remote_address,
        default_limits=[settings.DEFAULT_RATE_LIMIT],
        storage_uri=settings.RATELIMIT_STORAGE_URL or "memory://",
        storage_options=storage_options,
        in_memory_fallback_enabled=True,
        headers_enabled=True,
        key_prefix="montero",
        strategy="fixed-window",
    )
    limiter.init_app(app)
    app.extensions["montero_limiter"] = limiter
    app.extensions["montero_login_throttle"] = auth.build_throttle(settings)
    queue = auth.build_mail_queue(app, settings)
    app.extensions["montero_mail_queue"] = queue
    # The first request of a process looks for jobs left by a previous one, and prunes; then hourly.
    app.before_request(queue.wake_if_prune_due)
    return limiter


def register_blueprints(app: Flask, limiter: Limiter, settings: Settings) -> None:
    app.register_blueprint(health.build_blueprint(limiter, settings))
    app.register_blueprint(auth.build_blueprint(limiter, settings))
    app.register_blueprint(clients.build_blueprint())
    app.register_blueprint(affiliations.build_blueprint())
    app.register_blueprint(audit.build_blueprint())
    app.register_blueprint(pages.build_blueprint())
