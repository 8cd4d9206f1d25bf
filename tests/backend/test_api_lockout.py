"""Issue 12 point 3: a stranger's wrong passwords must not lock the owner out; failures get a growing delay."""

from __future__ import annotations

from typing import Any

from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, create_admin
from flask import Flask


def attempt(client: Any, password: str, address: str) -> Any:
    return client.post(
        "/api/auth/login",
        json={"email": ADMIN_EMAIL, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_strangers_failures_do_not_lock_the_owner_out(make_app: Any) -> None:
    app: Flask = make_app(LOGIN_LIMIT_ACCOUNT="5 per 15 minutes")
    create_admin(app)
    client = app.test_client()
    assert [attempt(client, "wrong-password", "203.0.113.9").status_code for _ in range(5)] == [401] * 5
    # The stranger now waits, with a Retry-After, even with the right password ...
    delayed = attempt(client, ADMIN_PASSWORD, "203.0.113.9")
    assert delayed.status_code == 429 and int(delayed.headers["Retry-After"]) >= 1
    # ... but the owner, from their own address, logs in at once.
    assert attempt(client, ADMIN_PASSWORD, "198.51.100.7").status_code == 200


def test_the_delay_grows_with_each_failure(make_app: Any) -> None:
    app: Flask = make_app(LOGIN_LIMIT_ACCOUNT="2 per 15 minutes")
    create_admin(app)
    throttle = app.extensions["montero_login_throttle"]
    waits = []
    for _ in range(6):
        throttle.failed(ADMIN_EMAIL, "203.0.113.9")
        waits.append(throttle.retry_after(ADMIN_EMAIL, "203.0.113.9"))
    assert waits[0] == 0 and waits[1:] == sorted(waits[1:]) and waits[-1] >= 8
    throttle.succeeded(ADMIN_EMAIL, "203.0.113.9")
    assert throttle.retry_after(ADMIN_EMAIL, "203.0.113.9") == 0


def test_password_change_checks_are_throttled(make_app: Any) -> None:
    app: Flask = make_app(LOGIN_LIMIT_ACCOUNT="3 per 15 minutes")
    create_admin(app)
    client = app.test_client()
    token = attempt(client, ADMIN_PASSWORD, "198.51.100.7").get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    body = {"current_password": "guess-guess", "new_password": "brand-new-pass"}
    statuses = [
        client.post("/api/auth/password", json=body, headers=headers, environ_base={"REMOTE_ADDR": "198.51.100.7"})
        .status_code
        for _ in range(4)
    ]
    assert statuses == [400, 400, 400, 429]
