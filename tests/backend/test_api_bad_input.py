"""Bad input on every endpoint: malformed JSON, wrong types, oversize bodies, unknown ids.

Each answer must be a 4xx JSON error of the one shape, never a 500, and nothing may be written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, create_admin, login, row_counts
from flask import Flask
from flask.testing import FlaskClient

MAX_BODY = 4096

# (method, path, a body with wrong types) for every endpoint that reads a JSON body.
BODY_ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/api/auth/register", {"email": 5, "password": ["x"], "role": "superuser"}),
    ("POST", "/api/auth/login", {"email": {"a": 1}, "password": 12345678}),
    ("POST", "/api/auth/password", {"current_password": None, "new_password": 123}),
    ("POST", "/api/auth/password-reset", {"email": True}),
    ("POST", "/api/auth/password-reset/confirm", {"token": 1, "new_password": "short"}),
    ("POST", "/api/clients", {"name": 1, "nit": None, "active": "yes", "email": "not-an-email"}),
    ("PATCH", "/api/clients/{client}", {"active": 1, "name": "", "unknown": "x"}),
    (
        "POST",
        "/api/clients/{client}/affiliations",
        {"employee_name": "", "document_number": 7, "salary": "1000", "start_date": "31/12/2024", "status": "gone"},
    ),
    ("PATCH", "/api/affiliations/{affiliation}", {"salary": True, "end_date": 20240101, "status": None}),
]
ID_ENDPOINTS: list[tuple[str, str]] = [
    ("GET", "/api/clients/{id}"),
    ("PATCH", "/api/clients/{id}"),
    ("DELETE", "/api/clients/{id}"),
    ("GET", "/api/clients/{id}/affiliations"),
    ("POST", "/api/clients/{id}/affiliations"),
    ("GET", "/api/affiliations/{id}"),
    ("PATCH", "/api/affiliations/{id}"),
    ("DELETE", "/api/affiliations/{id}"),
]
LIST_ENDPOINTS = ["/api/clients", "/api/affiliations", "/api/clients/{client}/affiliations", "/api/audit"]
MALFORMED = [b"{not json", b"[1, 2, 3]", b"null", b'"a string"', b"", b"[" * 2000 + b"]" * 2000]


@pytest.fixture
def setup(make_app: Any, db_path: Path) -> Iterator[tuple[FlaskClient, dict[str, str], dict[str, int]]]:
    app: Flask = make_app(
        MAX_CONTENT_LENGTH=MAX_BODY,
        LOGIN_LIMIT_ACCOUNT="10000 per minute",
        LOGIN_LIMIT_ADDRESS="10000 per minute",
        DEFAULT_RATE_LIMIT="10000 per minute",
    )
    create_admin(app)
    client = app.test_client()
    headers = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    cid = client.post("/api/clients", json={"name": "ACME", "nit": "1"}, headers=headers).get_json()["client"]["id"]
    aff = client.post(
        f"/api/clients/{cid}/affiliations", json={"employee_name": "Ana", "document_number": "9"}, headers=headers
    ).get_json()["affiliation"]["id"]
    ids = {"client": cid, "affiliation": aff}
    before = row_counts(db_path)
    yield client, headers, ids
    assert row_counts(db_path) == before, "a rejected request wrote to the database"


def assert_json_error(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, (response.status_code, response.get_data(as_text=True)[:300])
    assert response.mimetype == "application/json"
    error: dict[str, Any] = response.get_json()["error"]
    assert error["status"] == response.status_code and error["code"] and error["message"]
    assert "Traceback" not in response.get_data(as_text=True)
    return error


def test_malformed_json_everywhere(setup: Any) -> None:
    client, headers, ids = setup
    for method, path, _ in BODY_ENDPOINTS:
        for raw in MALFORMED:
            response = client.open(
                path.format(**ids), method=method, data=raw, headers=headers, content_type="application/json"
            )
            error = assert_json_error(response, 400)
            assert error["code"] == "invalid_json"


def test_wrong_types_everywhere(setup: Any) -> None:
    client, headers, ids = setup
    for method, path, body in BODY_ENDPOINTS:
        response = client.open(path.format(**ids), method=method, json=body, headers=headers)
        error = assert_json_error(response, 400)
        assert error["code"] == "validation_error" and error["fields"], (path, error)


def test_oversize_bodies_everywhere(setup: Any) -> None:
    client, headers, ids = setup
    huge = b'{"name": "' + b"x" * (MAX_BODY * 4) + b'"}'
    for method, path, _ in BODY_ENDPOINTS:
        response = client.open(
            path.format(**ids), method=method, data=huge, headers=headers, content_type="application/json"
        )
        error = assert_json_error(response, 413)
        assert error["code"] == "payload_too_large"


def test_long_strings_within_the_body_limit(setup: Any) -> None:
    client, headers, _ = setup
    response = client.post("/api/clients", json={"name": "x" * 1000, "nit": "2"}, headers=headers)
    assert assert_json_error(response, 400)["fields"] == {"name": "must be at most 200 characters"}


def test_unknown_ids_everywhere(setup: Any) -> None:
    client, headers, _ = setup
    for method, path in ID_ENDPOINTS:
        for unknown in ("999999", "99999999999999999999999999", "0"):
            body = {"employee_name": "Ana", "document_number": "1"} if method in {"POST", "PATCH"} else None
            response = client.open(path.format(id=unknown), method=method, json=body, headers=headers)
            assert_json_error(response, 404)
        for not_an_id in ("abc", "-1", "1.5"):
            response = client.open(path.format(id=not_an_id), method=method, headers=headers)
            assert_json_error(response, 404)


def test_bad_query_parameters(setup: Any) -> None:
    client, headers, ids = setup
    for path in LIST_ENDPOINTS:
        for query in ("page=abc", "page=0", "per_page=1000", "per_page=-5"):
            assert_json_error(client.get(f"{path.format(**ids)}?{query}", headers=headers), 400)
    assert_json_error(client.get("/api/clients?active=maybe", headers=headers), 400)
    assert_json_error(client.get("/api/audit?entity_id=x", headers=headers), 400)


def test_wrong_methods_and_unknown_paths(setup: Any) -> None:
    client, headers, _ = setup
    assert_json_error(client.put("/api/clients", json={}, headers=headers), 405)
    assert_json_error(client.get("/api/auth/login"), 405)
    assert_json_error(client.delete("/health"), 405)
    assert_json_error(client.get("/api/nothing-here"), 404)


def test_bad_or_missing_tokens(setup: Any) -> None:
    client, _, _ = setup
    for header in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer " + "x" * 500},
        {"Authorization": "Bearer forged-token"},
    ):
        assert_json_error(client.post("/api/clients", json={"name": "A", "nit": "3"}, headers=header), 401)
        assert_json_error(client.get("/api/auth/me", headers=header), 401)


def test_nothing_to_update(setup: Any) -> None:
    client, headers, ids = setup
    assert_json_error(client.patch(f"/api/clients/{ids['client']}", json={}, headers=headers), 400)


def test_unexpected_errors_are_json_without_traceback(make_app: Any) -> None:
    app: Flask = make_app()

    def boom() -> str:
        raise RuntimeError("secret internals")

    app.add_url_rule("/boom", view_func=boom)
    response = app.test_client().get("/boom")
    error = assert_json_error(response, 500)
    assert "secret internals" not in response.get_data(as_text=True)
    assert error["code"] == "internal_error"


def test_a_surrogate_email_keeps_the_log_line_and_the_shared_rate_limit(
    make_app: Any, own_redis: Any, tmp_path: Path
) -> None:
    """Issue 12 point 1's side effects: the request log line was lost (PendingRollbackError in the request
    logger) and the email, as a limit key Redis could not encode, pushed Flask-Limiter onto per-worker memory."""
    import redis

    _, url = own_redis
    app = make_app(RATELIMIT_STORAGE_URL=url, LOG_LEVEL="INFO", LOG_DIR=str(tmp_path / "logs"),
                   LOGIN_LIMIT_ADDRESS="50 per minute")
    client = app.test_client()
    bodies = ['{"email":"\\ud800@x.test","password":"x"}', '{"email":"a@x.test","password":"\\ud800"}',
              '{"email":"b@x.test","password":"wrong-password"}']
    statuses = [client.post("/api/auth/login", data=b, content_type="application/json").status_code for b in bodies]
    assert statuses == [400, 400, 401]
    text = (tmp_path / "logs" / "montero-api.log").read_text()
    assert text.count("POST /api/auth/login 400") == 2 and "POST /api/auth/login 401" in text
    # Every one of the three requests was counted in Redis (shared by all workers), none in a fallback.
    store = redis.Redis.from_url(url)
    counters = [int(store.get(key) or 0) for key in store.scan_iter("*address:*")]
    assert counters == [3], counters
