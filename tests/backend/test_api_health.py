"""GET /health: ok, degraded when Redis is down (and the app keeps serving), fail (503) when the database is."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from api_helpers import create_admin, free_port
from flask import Flask


def test_ok_with_database_and_redis(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/health")
    body = response.get_json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok" and body["database"]["revision"]
    assert body["redis"]["status"] == "ok"
    assert body["version"]


def test_ok_without_redis_configured(make_app: Callable[..., Flask]) -> None:
    body = make_app(RATELIMIT_STORAGE_URL="").test_client().get("/health").get_json()
    assert body["status"] == "ok"
    assert body["redis"]["status"] == "disabled"


def test_degraded_when_redis_is_down_and_login_still_works(make_app: Callable[..., Flask]) -> None:
    app = make_app(RATELIMIT_STORAGE_URL=f"redis://127.0.0.1:{free_port()}/0")
    client = app.test_client()
    response = client.get("/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["redis"]["status"] == "down"
    assert "memory" in body["redis"]["rate_limit_storage"]
    create_admin(app)
    # The limiter falls back to in-memory storage: the request is served, not a 500.
    login = client.post("/api/auth/login", json={"email": "admin@montero.test", "password": "admin-password-1"})
    assert login.status_code == 200
    assert (
        client.get("/api/clients", headers={"Authorization": "Bearer " + login.get_json()["token"]}).status_code == 200
    )


def test_fail_when_the_database_is_broken(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    broken = tmp_path / "broken.db"
    broken.write_bytes(b"this is not a sqlite database" * 100)
    client = make_app(DATABASE_URL=f"sqlite:///{broken}").test_client()
    response = client.get("/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "fail"
    assert body["database"]["status"] == "fail" and body["database"]["error"]
    # Other endpoints answer with the JSON error shape, not a 500 page.
    login = client.post("/api/auth/login", json={"email": "a@b.co", "password": "whatever1"})
    assert login.status_code == 503
    assert login.get_json()["error"]["code"] == "service_unavailable"


def test_fail_when_the_schema_is_missing(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    client = make_app(DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}").test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert "alembic upgrade head" in response.get_json()["database"]["error"]
