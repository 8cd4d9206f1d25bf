"""Accounts: register, login/logout, me, password change, reset by mail (through a real SMTP sink)."""

from __future__ import annotations

import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from api_helpers import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    create_admin,
    free_port,
    login,
    row_counts,
    wait_for,
    wait_queue_empty,
)
from flask import Flask
from flask.testing import FlaskClient


class Sink:
    """aiosmtpd handler keeping every message it receives."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    yield sink, port
    controller.stop()


@pytest.fixture
def mail_app(make_app: Callable[..., Flask], smtp_sink: tuple[Sink, int]) -> Flask:
    app = make_app(
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=smtp_sink[1],
        MAIL_USE_TLS=False,
        MAIL_DEFAULT_SENDER="montero@montero.test",
        PUBLIC_BASE_URL="https://montero.example",
    )
    create_admin(app)
    return app


def reset_token(sink: Sink) -> str:
    deadline = time.monotonic() + 10
    while not sink.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    body = sink.messages[-1][1].get_payload(decode=True).decode()
    match = re.search(r"token=([A-Za-z0-9_\-]+)", body)
    assert match, body
    return match.group(1)


def test_login_me_logout(client: FlaskClient, app: Flask) -> None:
    create_admin(app)
    headers = login(client, ADMIN_EMAIL.upper(), ADMIN_PASSWORD)  # e-mails are case-insensitive
    me = client.get("/api/auth/me", headers=headers)
    assert me.status_code == 200
    assert me.get_json()["user"] | {"id": 0, "created_at": ""} == {
        "id": 0,
        "email": ADMIN_EMAIL,
        "full_name": "",
        "role": "admin",
        "is_active": True,
        "created_at": "",
    }
    assert "password_hash" not in me.get_json()["user"]
    assert client.post("/api/auth/logout", headers=headers).status_code == 200
    after = client.get("/api/auth/me", headers=headers)
    assert after.status_code == 401
    assert after.get_json()["error"]["code"] == "unauthorized"


def test_wrong_password_and_unknown_account_look_the_same(client: FlaskClient, app: Flask) -> None:
    create_admin(app)
    wrong = client.post("/api/auth/login", json={"email": ADMIN_EMAIL, "password": "not-the-password"})
    unknown = client.post("/api/auth/login", json={"email": "nobody@montero.test", "password": "not-the-password"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.get_json() == unknown.get_json()


def test_passwords_are_stored_with_argon2(client: FlaskClient, admin_headers: dict[str, str], db_path: Path) -> None:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        (stored,) = conn.execute("SELECT password_hash FROM users").fetchone()
    assert stored.startswith("$argon2id$") and ADMIN_PASSWORD not in stored


def test_registration_is_admin_only_by_default(client: FlaskClient, admin_headers: dict[str, str]) -> None:
    body = {"email": "new@montero.test", "password": "new-password-1"}
    assert client.post("/api/auth/register", json=body).status_code == 401
    created = client.post("/api/auth/register", json=body | {"role": "staff"}, headers=admin_headers)
    assert created.status_code == 201
    assert created.get_json()["user"]["role"] == "staff"
    duplicate = client.post("/api/auth/register", json=body, headers=admin_headers)
    assert duplicate.status_code == 409


def test_open_registration_creates_staff_only(make_app: Callable[..., Flask]) -> None:
    client = make_app(REGISTRATION_OPEN=True).test_client()
    body = {"email": "self@montero.test", "password": "self-password-1", "full_name": "Self Service"}
    created = client.post("/api/auth/register", json=body)
    assert created.status_code == 201 and created.get_json()["user"]["role"] == "staff"
    escalate = client.post(
        "/api/auth/register", json={"email": "x@montero.test", "password": "x-password-1", "role": "admin"}
    )
    assert escalate.status_code == 401


def test_staff_cannot_do_admin_things(client: FlaskClient, staff_headers: dict[str, str]) -> None:
    client_id = client.post("/api/clients", json={"name": "ACME", "nit": "900-1"}, headers=staff_headers).get_json()[
        "client"
    ]["id"]
    assert client.delete(f"/api/clients/{client_id}", headers=staff_headers).status_code == 403
    assert client.get("/api/audit", headers=staff_headers).status_code == 403
    register = client.post(
        "/api/auth/register", json={"email": "y@montero.test", "password": "y-password-1"}, headers=staff_headers
    )
    assert register.status_code == 403


def test_password_change_revokes_other_sessions(client: FlaskClient, app: Flask) -> None:
    create_admin(app)
    first = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    second = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    wrong = client.post(
        "/api/auth/password", json={"current_password": "nope-nope", "new_password": "brand-new-pass"}, headers=first
    )
    assert wrong.status_code == 400
    changed = client.post(
        "/api/auth/password", json={"current_password": ADMIN_PASSWORD, "new_password": "brand-new-pass"}, headers=first
    )
    assert changed.status_code == 200
    assert client.get("/api/auth/me", headers=first).status_code == 200
    assert client.get("/api/auth/me", headers=second).status_code == 401
    login(client, ADMIN_EMAIL, "brand-new-pass")


def test_reset_mail_reaches_the_smtp_sink(mail_app: Flask, smtp_sink: tuple[Sink, int]) -> None:
    sink, _ = smtp_sink
    client = mail_app.test_client()
    old_session = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    response = client.post("/api/auth/password-reset", json={"email": ADMIN_EMAIL})
    assert response.status_code == 202
    token = reset_token(sink)
    recipients, message = sink.messages[-1]
    assert recipients == [ADMIN_EMAIL]
    assert message["From"] == "montero@montero.test"
    body = message.get_payload(decode=True).decode()
    # The token travels in the URL fragment, which no browser sends to a server (so it reaches no log).
    assert f"https://montero.example/reset-password#token={token}" in body
    assert "?token=" not in body

    confirm = client.post("/api/auth/password-reset/confirm", json={"token": token, "new_password": "reset-password-1"})
    assert confirm.status_code == 200
    login(client, ADMIN_EMAIL, "reset-password-1")
    assert client.get("/api/auth/me", headers=old_session).status_code == 401  # reset logs out everywhere

    again = client.post("/api/auth/password-reset/confirm", json={"token": token, "new_password": "another-pass-1"})
    assert again.status_code == 400  # single use
    assert again.get_json()["error"]["code"] == "invalid_token"


def test_reset_for_unknown_account_sends_nothing(
    mail_app: Flask, smtp_sink: tuple[Sink, int], db_path: Path
) -> None:
    response = mail_app.test_client().post("/api/auth/password-reset", json={"email": "ghost@montero.test"})
    assert response.status_code == 202
    wait_queue_empty(db_path)  # the queue looked the address up and dropped the job
    assert smtp_sink[0].messages == []
    assert row_counts(db_path)["password_reset_tokens"] == 0


def test_expired_reset_token_is_refused(make_app: Callable[..., Flask], smtp_sink: tuple[Sink, int]) -> None:
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_sink[1], MAIL_USE_TLS=False, PASSWORD_RESET_TTL_MINUTES=0)
    create_admin(app)
    client = app.test_client()
    assert client.post("/api/auth/password-reset", json={"email": ADMIN_EMAIL}).status_code == 202
    token = reset_token(smtp_sink[0])
    response = client.post(
        "/api/auth/password-reset/confirm", json={"token": token, "new_password": "reset-password-1"}
    )
    assert response.status_code == 400
    login(client, ADMIN_EMAIL, ADMIN_PASSWORD)


def test_mail_server_down_still_answers_202_and_keeps_the_job(
    client: FlaskClient, app: Flask, db_path: Path
) -> None:
    create_admin(app)  # base settings point MAIL_* at a closed port
    response = client.post("/api/auth/password-reset", json={"email": ADMIN_EMAIL})
    assert response.status_code == 202
    with sqlite3.connect(db_path) as conn:
        wait_for(
            lambda: conn.execute("SELECT last_error FROM mail_jobs").fetchone()[0] is not None,
            what="a first failed delivery attempt",
        )
        attempts, error = conn.execute("SELECT attempts, last_error FROM mail_jobs").fetchone()
    # Still queued for a retry, with the reason; the undelivered link was deleted, not left valid.
    assert attempts >= 1 and "could not send mail via 127.0.0.1:1" in error
    assert row_counts(db_path)["password_reset_tokens"] == 0


def test_create_admin_command_updates_with_flag(app: Flask) -> None:
    create_admin(app)
    runner = app.test_cli_runner()
    again = runner.invoke(args=["create-admin", "--email", ADMIN_EMAIL, "--password", "other-password-1"])
    assert again.exit_code != 0 and "--update" in again.output
    updated = runner.invoke(args=["create-admin", "--email", ADMIN_EMAIL, "--password", "other-password-1", "--update"])
    assert updated.exit_code == 0
    login(app.test_client(), ADMIN_EMAIL, "other-password-1")
    weak = runner.invoke(args=["create-admin", "--email", "z@montero.test", "--password", "short"])
    assert weak.exit_code == 2


def _two_tokens(client: FlaskClient, sink: Sink) -> list[str]:
    tokens = []
    for _ in range(2):
        before = len(sink.messages)
        assert client.post("/api/auth/password-reset", json={"email": ADMIN_EMAIL}).status_code == 202
        deadline = time.monotonic() + 10
        while len(sink.messages) == before and time.monotonic() < deadline:
            time.sleep(0.02)
        tokens.append(reset_token(sink))
    return tokens


def _revive_every_token(app: Flask) -> None:
    """Both links live at once: the queue keeps one live link per account (a new send revokes the older), so
    without this the first token is already dead and the test could not see the reset's own revocation. Two
    live links still happen: a mail in flight while the previous link is used, or tokens from older versions."""
    from sqlalchemy import text

    with app.extensions["montero_db"].engine.begin() as conn:
        assert conn.execute(text("UPDATE password_reset_tokens SET used_at = NULL")).rowcount == 2


def test_a_reset_revokes_every_outstanding_token(mail_app: Flask, smtp_sink: tuple[Sink, int]) -> None:
    client = mail_app.test_client()
    first, second = _two_tokens(client, smtp_sink[0])
    _revive_every_token(mail_app)
    ok = client.post("/api/auth/password-reset/confirm", json={"token": second, "new_password": "reset-password-1"})
    assert ok.status_code == 200
    old = client.post("/api/auth/password-reset/confirm", json={"token": first, "new_password": "reset-password-2"})
    assert old.status_code == 400 and old.get_json()["error"]["code"] == "invalid_token"


def test_a_password_change_revokes_every_outstanding_token(mail_app: Flask, smtp_sink: tuple[Sink, int]) -> None:
    client = mail_app.test_client()
    tokens = _two_tokens(client, smtp_sink[0])
    _revive_every_token(mail_app)
    headers = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    body = {"current_password": ADMIN_PASSWORD, "new_password": "brand-new-pass"}
    assert client.post("/api/auth/password", json=body, headers=headers).status_code == 200
    for token in tokens:
        old = client.post("/api/auth/password-reset/confirm", json={"token": token, "new_password": "reset-password-2"})
        assert old.status_code == 400
