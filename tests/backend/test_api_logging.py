"""Request logs go to stdout and to a rotating file under LOG_DIR (/app/logs in the image)."""

from __future__ import annotations

import logging.handlers
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from montero_api.logfiles import SharedFileHandler


def test_requests_are_logged_to_stdout_and_file(
    make_app: Callable[..., Flask], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "applogs"
    app = make_app(LOG_LEVEL="INFO", LOG_DIR=str(log_dir))
    client = app.test_client()
    client.get("/api/clients")
    text = (log_dir / "montero-api.log").read_text()
    assert "GET /api/clients 401" in text
    assert "GET /api/clients 401" in capsys.readouterr().out
    handlers = logging.getLogger("montero_api").handlers
    # Workers never rotate (issue 21 point 1): the gunicorn master does, tests/backend/test_api_log_rotation.py.
    assert not [h for h in handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert [h for h in handlers if isinstance(h, SharedFileHandler)]
    assert (log_dir / "montero-api.log").stat().st_mode & 0o777 == 0o640


def test_passing_health_probes_are_logged_only_at_debug(
    make_app: Callable[..., Flask], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Docker's healthcheck polls /health every 15 s: at INFO those lines would bury real requests."""
    app = make_app(LOG_LEVEL="INFO", LOG_DIR=str(tmp_path / "info"))
    assert app.test_client().get("/health").status_code == 200
    assert "GET /health" not in (tmp_path / "info" / "montero-api.log").read_text()
    assert "GET /health" not in capsys.readouterr().out

    app = make_app(LOG_LEVEL="DEBUG", LOG_DIR=str(tmp_path / "debug"))
    assert app.test_client().get("/health").status_code == 200
    assert "GET /health 200" in (tmp_path / "debug" / "montero-api.log").read_text()


def test_a_failing_health_probe_is_logged(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a sqlite database" * 100)
    app = make_app(LOG_LEVEL="INFO", LOG_DIR=str(tmp_path / "logs"), DATABASE_URL=f"sqlite:///{broken}")
    assert app.test_client().get("/health").status_code == 503
    assert "GET /health 503" in (tmp_path / "logs" / "montero-api.log").read_text()


def test_unwritable_log_dir_falls_back_to_stdout(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    app = make_app(LOG_DIR=str(blocker / "logs"))
    assert app.test_client().get("/health").status_code == 200
