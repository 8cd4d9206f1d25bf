"""WSGI entry point: `gunicorn wsgi:app` and `flask --app wsgi <command>` (run from backend/, /app in the image)."""

from __future__ import annotations

import sys

from montero_api import create_app
from montero_api.settings import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One clear line instead of a traceback; gunicorn/flask then exit non-zero.
    print(f"montero_api: configuration error: {exc}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
