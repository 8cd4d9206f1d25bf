"""Sistema Montero API: the Flask backend bundled with the montero operations CLI."""

from __future__ import annotations

__version__ = "1.0.0"

from .app import create_app

__all__ = ["__version__", "create_app"]
