"""Issue 12 point 1: no input a client can send produces a 5xx.

Every write endpoint and every list filter gets lone surrogates, control characters, very long strings and
odd JSON values, through the real SQLite and Redis; each answer must be < 500, and text that cannot be stored
is a 400 naming the field.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, create_admin, login
from flask import Flask

NASTY_STRINGS = ["\ud800", "a\udfffb", "\ud800@x.test", "nul\x00byte", "bell\x07", "esc\x1b[31m", "x" * 100_000, ""]
ODD_VALUES: list[Any] = [*NASTY_STRINGS, None, True, 0, -1, 2**64, 1e308, 1.5, [], ["x"], {}, {"a": {"b": 1}}]
WRITES = [
    ("POST", "/api/auth/register", ["email", "password", "full_name", "role"]),
    ("POST", "/api/auth/login", ["email", "password"]),
    ("POST", "/api/auth/password", ["current_password", "new_password"]),
    ("POST", "/api/auth/password-reset", ["email"]),
    ("POST", "/api/auth/password-reset/confirm", ["token", "new_password"]),
    ("POST", "/api/clients", ["name", "nit", "email", "phone", "city", "active"]),
    ("PATCH", "/api/clients/{client}", ["name", "nit", "email", "phone", "city", "active"]),
    (
        "POST",
        "/api/clients/{client}/affiliations",
        [
            "employee_name",
            "document_number",
            "eps",
            "arl",
            "pension_fund",
            "salary",
            "start_date",
            "end_date",
            "status",
        ],
    ),
    (
        "PATCH",
        "/api/affiliations/{affiliation}",
        [
            "employee_name",
            "document_number",
            "eps",
            "arl",
            "pension_fund",
            "salary",
            "start_date",
            "end_date",
            "status",
        ],
    ),
]
VALID = {
    "email": "someone@montero.test",
    "password": "a-good-password",
    "current_password": ADMIN_PASSWORD,
    "new_password": "another-password",
    "token": "t" * 40,
    "name": "ACME",
    "nit": "900",
    "employee_name": "Ana",
    "document_number": "77",
}
FILTERS = {
    "/api/clients": ["q", "city", "active", "page", "per_page"],
    "/api/affiliations": ["client_id", "status", "document_number", "eps", "q", "page", "per_page"],
    "/api/clients/{client}/affiliations": ["status", "document_number", "eps", "q"],
    "/api/audit": ["entity", "entity_id", "user_id", "action"],
}
QUERY_VALUES = ["%00", "%ED%A0%80", "%FF%FE", "%1B", "x" * 5000, "9" * 5000, "-1", "%F0%9F%98%80"]


@pytest.fixture(params=["sqlite", "postgresql"])
def fuzz_app(request: pytest.FixtureRequest, make_app: Any) -> Flask:
    # On PostgreSQL too: there a salary beyond int4 and a NUL byte in text came back as a misleading 503
    # "database unavailable" (the driver refused them); the checks must hold on both databases.
    database = {"DATABASE_URL": request.getfixturevalue("postgres_url")} if request.param == "postgresql" else {}
    app: Flask = make_app(
        LOGIN_LIMIT_ACCOUNT="100000 per minute",
        LOGIN_LIMIT_ADDRESS="100000 per minute",
        DEFAULT_RATE_LIMIT="100000 per minute",
        **database,
    )
    create_admin(app)
    return app


def test_every_write_endpoint_survives_odd_values(fuzz_app: Flask) -> None:
    client = fuzz_app.test_client()
    headers = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    cid = client.post("/api/clients", json={"name": "ACME", "nit": "1"}, headers=headers).get_json()["client"]["id"]
    aff = client.post(
        f"/api/clients/{cid}/affiliations", json={"employee_name": "Ana", "document_number": "9"}, headers=headers
    ).get_json()["affiliation"]["id"]
    failures = []
    for method, path, fields in WRITES:
        url = path.format(client=cid, affiliation=aff)
        for field in fields:
            for value in ODD_VALUES:
                body = {f: VALID[f] for f in fields if f in VALID} | {field: value}
                # json.dumps keeps lone surrogates as \ud800 escapes: valid JSON, as an attacker sends it.
                raw = json.dumps(body)
                response = client.open(url, method=method, data=raw, headers=headers, content_type="application/json")
                if response.status_code >= 500:
                    failures.append((method, url, field, repr(value)[:40], response.status_code))
                if isinstance(value, str) and ("\ud800" in value or "\x00" in value) and response.status_code == 400:
                    error = response.get_json()["error"]
                    if error["code"] == "validation_error" and field not in (error.get("fields") or {}):
                        failures.append((method, url, field, "400 does not name the field", error))
        # Odd keys too: an unencodable field name must not crash the error answer.
        response = client.open(
            url, method=method, data='{"\\ud800": 1}', headers=headers, content_type="application/json"
        )
        if response.status_code >= 500:
            failures.append((method, url, "<key>", "\\ud800", response.status_code))
    assert failures == []
    # The session still works: nothing above broke the admin's account or the database.
    assert client.get("/api/auth/me", headers=headers).status_code == 200


def test_surrogate_email_is_a_400_naming_the_field(fuzz_app: Flask) -> None:
    client = fuzz_app.test_client()
    response = client.post(
        "/api/auth/login", data='{"email":"\\ud800@x.test","password":"x"}', content_type="application/json"
    )
    assert response.status_code == 400
    assert "email" in response.get_json()["error"]["fields"]


def test_every_list_filter_survives_odd_values(fuzz_app: Flask) -> None:
    client = fuzz_app.test_client()
    headers = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    cid = client.post("/api/clients", json={"name": "ACME", "nit": "1"}, headers=headers).get_json()["client"]["id"]
    failures = []
    for path, names in FILTERS.items():
        for name in names:
            for value in QUERY_VALUES:
                url = f"{path.format(client=cid)}?{name}={value}"
                response = client.get(url, headers=headers)
                if response.status_code >= 500:
                    failures.append((url[:80], response.status_code))
    assert failures == []


@pytest.mark.parametrize(
    "address", ["attacker,victim@corp.test", "a<b>@corp.test", "nul\x00@corp.test", 'a"b@corp.test', "a b@corp.test"]
)
def test_email_check_refuses_separators(fuzz_app: Flask, address: str) -> None:
    response = fuzz_app.test_client().post("/api/auth/password-reset", json={"email": address})
    assert response.status_code == 400
    assert "email" in response.get_json()["error"]["fields"]


def test_salary_beyond_an_integer_column_is_a_400(fuzz_app: Flask) -> None:
    client = fuzz_app.test_client()
    headers = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    cid = client.post("/api/clients", json={"name": "ACME", "nit": "1"}, headers=headers).get_json()["client"]["id"]
    for salary in (2**31, -1, 2**63):
        body = {"employee_name": "Ana", "document_number": "9", "salary": salary}
        response = client.post(f"/api/clients/{cid}/affiliations", json=body, headers=headers)
        assert response.status_code == 400 and "salary" in response.get_json()["error"]["fields"]
    # The largest salary accepted is one the column really holds (int4 on PostgreSQL).
    body = {"employee_name": "Ana", "document_number": "9", "salary": 2**31 - 1}
    created = client.post(f"/api/clients/{cid}/affiliations", json=body, headers=headers)
    assert created.status_code == 201 and created.get_json()["affiliation"]["salary"] == 2**31 - 1


def test_nul_bytes_are_a_400_naming_the_field(fuzz_app: Flask) -> None:
    client = fuzz_app.test_client()
    headers = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    response = client.post("/api/clients", json={"name": "AC\x00ME", "nit": "1", "city": "Cali\x00"}, headers=headers)
    assert response.status_code == 400
    assert set(response.get_json()["error"]["fields"]) == {"name", "city"}
    listed = client.get("/api/clients?q=a%00b", headers=headers)
    assert listed.status_code == 400 and listed.get_json()["error"]["fields"] == {
        "q": "must not contain control characters"
    }
    login_nul = client.post("/api/auth/login", json={"email": "a\x00@b.test", "password": "x\x00"})
    assert login_nul.status_code == 400


def test_security_headers(fuzz_app: Flask) -> None:
    response = fuzz_app.test_client().get("/health")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
