"""Request logs go to stdout and to a rotating file under LOG_DIR (/app/logs in the image)."""

from __future__ import annotations

import logging.handlers
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask


def test_requests_are_logged_to_stdout_and_file(
    make_app: Callable[..., Flask], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_dir = tmp_path / "applogs"
    app = make_app(LOG_LEVEL="INFO", LOG_DIR=str(log_dir))
    client = app.test_client()
    client.get("/health")
    client.get("/api/clients")
    text = (log_dir / "montero-api.log").read_text()
    assert "GET /health 200" in text
    assert "GET /api/clients 401" in text
    assert "GET /health 200" in capsys.readouterr().out
    handlers = logging.getLogger("montero_api").handlers
    rotating = [h for h in handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert rotating and rotating[0].maxBytes > 0 and rotating[0].backupCount > 0


def test_unwritable_log_dir_falls_back_to_stdout(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    app = make_app(LOG_DIR=str(blocker / "logs"))
    assert app.test_client().get("/health").status_code == 200
