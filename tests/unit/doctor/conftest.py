"""Doctor fixtures: a real temp project (files, modes, SQLite) and a fake at the Engine API only."""

from __future__ import annotations

from pathlib import Path

import pytest
from doctor_helpers import EXAMPLE, REV_A, REV_B, DoctorEngine


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_bin: Path) -> Path:
    """A project folder as `montero` finds it, with .env.example and two migrations."""
    for name in (
        "MONTERO_APP_PORTS",
        "MONTERO_HTTP_PORT",
        "MONTERO_HTTPS_PORT",
        "GUNICORN_WORKERS",
        "SQLITE_BUSY_TIMEOUT_MS",
        "MONTERO_BACKUP_DIR",
        "MONTERO_CERTS_DIR",
        "MONTERO_APP_IMAGE",
    ):
        monkeypatch.delenv(name, raising=False)
    r = tmp_path / "shop"
    (r / "docker").mkdir(parents=True)
    (r / "docker" / "compose.yml").write_text("services: {}\n")
    versions = r / "backend" / "migrations" / "versions"
    versions.mkdir(parents=True)
    (versions / "0001_init.py").write_text(REV_A)
    (versions / "0002_clients.py").write_text(REV_B)
    (r / ".env.example").write_text(EXAMPLE)
    (r / "data").mkdir()
    (r / "logs").mkdir()
    return r


@pytest.fixture
def engine() -> DoctorEngine:
    return DoctorEngine()
