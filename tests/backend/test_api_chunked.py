"""Issue 12 point 7: a chunked request body (no Content-Length) over MAX_CONTENT_LENGTH is a JSON 413, under the
real gunicorn, like a body that declares its length; a small chunked body is read as usual."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import requests
from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, Gunicorn


def _chunks(payload: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    # A generator makes requests send `Transfer-Encoding: chunked` without a Content-Length.
    for start in range(0, len(payload), size):
        yield payload[start : start + size]


def test_chunked_body_over_the_limit_is_a_413(gunicorn: Callable[..., Gunicorn]) -> None:
    server = gunicorn(workers=1)
    huge = b'{"email": "' + b"x" * (1024 * 1024 + 10) + b'@montero.test", "password": "x"}'
    response = requests.post(
        server.url + "/api/auth/login",
        data=_chunks(huge),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"]["code"] == "payload_too_large"


def test_small_chunked_body_is_read(gunicorn: Callable[..., Gunicorn]) -> None:
    server = gunicorn(workers=1)
    body = f'{{"email": "{ADMIN_EMAIL}", "password": "{ADMIN_PASSWORD}x"}}'.encode()
    response = requests.post(
        server.url + "/api/auth/login", data=_chunks(body, 8), headers={"Content-Type": "application/json"}, timeout=30
    )
    # The body was parsed: wrong credentials (no such account), not "body must be a JSON object".
    assert response.status_code == 401, response.text[:300]
    assert response.json()["error"]["code"] == "invalid_credentials"
