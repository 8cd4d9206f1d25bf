"""Rate limits live in Redis, so two app processes enforce one limit together."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import requests
from api_helpers import ADMIN_EMAIL, Gunicorn, create_admin
from flask import Flask

LIMIT = 4


def attempt(server: Gunicorn, email: str, password: str = "wrong-password") -> requests.Response:
    return requests.post(server.url + "/api/auth/login", json={"email": email, "password": password}, timeout=10)


def test_login_limit_per_account_is_shared_by_two_processes(
    gunicorn: Callable[..., Gunicorn], make_app: Callable[..., Flask]
) -> None:
    create_admin(make_app())
    limits = {"LOGIN_LIMIT_ACCOUNT": f"{LIMIT} per hour", "LOGIN_LIMIT_ADDRESS": "1000 per hour"}
    servers = [gunicorn(workers=1, **limits), gunicorn(workers=1, **limits)]
    alternating = itertools.cycle(servers)
    statuses = [attempt(next(alternating), ADMIN_EMAIL).status_code for _ in range(LIMIT)]
    assert statuses == [401] * LIMIT
    # The N+1th attempt is refused whichever process answers, even with the right password.
    for server in servers:
        refused = attempt(server, ADMIN_EMAIL, "admin-password-1")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "Retry-After" in refused.headers
    # Another account is not affected by this account's limit.
    assert attempt(servers[0], "someone-else@montero.test").status_code == 401


def test_login_limit_per_address(gunicorn: Callable[..., Gunicorn]) -> None:
    limits = {"LOGIN_LIMIT_ACCOUNT": "1000 per hour", "LOGIN_LIMIT_ADDRESS": f"{LIMIT} per hour"}
    servers = [gunicorn(workers=1, **limits), gunicorn(workers=1, **limits)]
    statuses = [attempt(servers[i % 2], f"user{i}@montero.test").status_code for i in range(LIMIT + 2)]
    assert statuses == [401] * LIMIT + [429, 429]
