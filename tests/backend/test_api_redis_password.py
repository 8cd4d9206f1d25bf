"""Issue 21 point 3: Redis has a password; the app reads it (REDIS_PASSWORD) into RATELIMIT_STORAGE_URL."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from api_helpers import free_port, wait_for
from montero_api.settings import Settings, with_redis_password


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[tuple[int, str]]:
    port, password = free_port(), secrets.token_hex(16)
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", password],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: bool(redis.Redis(port=port, password=password).ping()), what="redis-server")
    yield port, password
    proc.kill()
    proc.wait(timeout=10)


def test_password_goes_into_a_url_without_one() -> None:
    assert with_redis_password("redis://redis:6379/0", "p w") == "redis://:p%20w@redis:6379/0"
    assert with_redis_password("redis://:own@redis:6379/0", "x") == "redis://:own@redis:6379/0"
    assert with_redis_password("memory://", "x") == "memory://"
    settings = Settings.from_env({"FLASK_ENV": "development", "RATELIMIT_STORAGE_URL": "redis://redis:6379/0",
                                  "REDIS_PASSWORD": "s3cr3t-value"})
    assert settings.RATELIMIT_STORAGE_URL == "redis://:s3cr3t-value@redis:6379/0"
    shown = settings.redacted()
    assert "s3cr3t-value" not in str(shown)
    assert shown["RATELIMIT_STORAGE_URL"] == "redis://:***@redis:6379/0" and shown["REDIS_PASSWORD"] == "***"


def test_app_uses_the_password_for_rate_limits(make_app: Any, locked_redis: tuple[int, str]) -> None:
    port, password = locked_redis
    url = f"redis://127.0.0.1:{port}/0"
    app = make_app(RATELIMIT_STORAGE_URL=url, REDIS_PASSWORD=password)
    body = app.test_client().get("/health").get_json()
    assert body["redis"]["status"] == "ok", body
    # Without it Redis refuses the app: the same stack reports Redis down, so the password is what worked.
    app = make_app(RATELIMIT_STORAGE_URL=url)
    assert app.test_client().get("/health").get_json()["redis"]["status"] == "down"
