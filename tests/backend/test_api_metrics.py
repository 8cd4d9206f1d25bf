"""GET /metrics over a real gunicorn with 4 workers: the numbers are the sum over every worker
(prometheus_client multiprocess mode), not whichever worker answered the scrape."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, Gunicorn, create_admin
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

N = 240
ALLOWED_LABELS = {"method", "endpoint", "status", "le", "version", "revision"}


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = requests.get(url + "/metrics", timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def fresh_get(url: str) -> int:
    # A new connection each time, so gunicorn's workers share the load.
    return requests.get(url, headers={"Connection": "close"}, timeout=10).status_code


def test_metrics_sum_over_four_workers(
    gunicorn: Callable[..., Gunicorn], make_app: Callable[..., Flask], db_path: Path, tmp_path: Path
) -> None:
    create_admin(make_app())
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale = metrics_dir / "counter_1.db"
    stale.write_bytes(b"left over by a previous master")  # counted (or unreadable) unless cleared at start
    server = gunicorn(
        workers=4,
        DEFAULT_RATE_LIMIT="100000 per minute",
        LOGIN_LIMIT_ACCOUNT="3 per hour",
        LOGIN_LIMIT_ADDRESS="1000 per hour",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    assert not stale.exists()
    before = scrape(server.url)
    health = {"method": "GET", "endpoint": "/health"}

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: fresh_get(server.url + "/health"), range(N)))
    assert statuses == [200] * N

    after = scrape(server.url)
    got = value(after, "montero_http_requests_total", **health, status="200") - value(
        before, "montero_http_requests_total", **health, status="200"
    )
    assert got == N
    # The latency histogram moved by N too, in its buckets and its count.
    assert value(after, "montero_http_request_duration_seconds_count", **health) - value(
        before, "montero_http_request_duration_seconds_count", **health
    ) == N
    assert value(after, "montero_http_request_duration_seconds_bucket", **health, le="+Inf") - value(
        before, "montero_http_request_duration_seconds_bucket", **health, le="+Inf"
    ) == N
    assert value(after, "montero_http_request_duration_seconds_bucket", **health, le="1.0") > value(
        before, "montero_http_request_duration_seconds_bucket", **health, le="1.0"
    )
    assert value(after, "montero_http_request_duration_seconds_sum", **health) > value(
        before, "montero_http_request_duration_seconds_sum", **health
    )
    # Several workers wrote their own counters (the sum is not one worker's view).
    assert len(list(metrics_dir.glob("counter_*.db"))) >= 2

    # Three wrong passwords are login failures; the fourth attempt is refused with 429.
    login = server.url + "/api/auth/login"
    wrong = [requests.post(login, json={"email": ADMIN_EMAIL, "password": "wrong-password-1"}, timeout=10)
             for _ in range(4)]
    assert [r.status_code for r in wrong] == [401, 401, 401, 429]
    # Unknown accounts are login failures too (each under its own account limit).
    for email in ("other@montero.test", "admin2@montero.test"):
        assert requests.post(login, json={"email": email, "password": ADMIN_PASSWORD}, timeout=10).status_code == 401

    # A real database failure: the table the view reads is gone.
    create_admin(make_app(), email="ops@montero.test", password="ops-password-12")
    token_value = requests.post(
        login, json={"email": "ops@montero.test", "password": "ops-password-12"}, timeout=10
    ).json()["token"]
    with sqlite3.connect(db_path) as conn:
        conn.execute("DROP TABLE affiliations")
        conn.execute("DROP TABLE clients")
    broken = requests.get(server.url + "/api/clients", headers={"Authorization": f"Bearer {token_value}"}, timeout=10)
    assert broken.status_code == 503

    final = scrape(server.url)
    login_labels = {"method": "POST", "endpoint": "/api/auth/login"}
    assert value(final, "montero_http_requests_total", **login_labels, status="429") == 1
    assert value(final, "montero_rate_limited_total", endpoint="/api/auth/login") == 1
    assert value(final, "montero_login_failures_total") == 5
    assert value(final, "montero_db_errors_total") >= 1
    assert value(final, "montero_http_requests_total", method="GET", endpoint="/api/clients", status="503") == 1
    assert value(final, "montero_redis_degraded") == 0
    assert 0 < value(final, "montero_data_disk_used_ratio") < 1
    assert any(name == "montero_app_info" and dict(labels).get("version") for name, labels in final)
    # The scrape itself was in flight while it was answered; nothing else is.
    assert value(final, "montero_http_requests_in_flight") == 1

    # No per-user label: bounded label names, and no e-mail or token anywhere in the text.
    text = requests.get(server.url + "/metrics", timeout=10).text
    for secret in (ADMIN_EMAIL, "ops@montero.test", token_value, "wrong-password-1"):
        assert secret not in text
    assert {label for _, labels in final for label, _ in labels} <= ALLOWED_LABELS


def test_metrics_refused_through_a_proxy(client: FlaskClient) -> None:
    """nginx adds X-Forwarded-For; /metrics answers only clients on the compose network itself."""
    proxied = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 404
    assert proxied.get_json()["error"]["code"] == "not_found"
    direct = client.get("/metrics")
    assert direct.status_code == 200
    assert b"montero_http_requests_total" in direct.data
