"""Accounts: register, login/logout, current user, password change and reset by mail."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse as parse_limit
from sqlalchemy import func, select, update

from .database import db_session
from .errors import APIError
from .mailqueue import MailQueue, enqueue_password_reset
from .models import ROLES, AuthSession, PasswordResetToken, User, utcnow
from .security import (
    current_session,
    current_user,
    hash_password,
    login_required,
    password_problem,
    start_session,
    token_digest,
    verify_password,
)
from .settings import ConfigError, Settings
from .throttle import LoginThrottle
from .validation import Field, check_email, json_body, parse

log = logging.getLogger("montero_api.auth")

REGISTER = {
    "email": Field(str, required=True, max_length=254, check=check_email),
    "password": Field(str, required=True, max_length=128, check=password_problem),
    "full_name": Field(str, max_length=200),
    "role": Field(str, choices=ROLES),
}
LOGIN = {"email": Field(str, required=True, max_length=254), "password": Field(str, required=True, max_length=128)}
CHANGE = {
    "current_password": Field(str, required=True, max_length=128),
    "new_password": Field(str, required=True, max_length=128, check=password_problem),
}
RESET_REQUEST = {"email": Field(str, required=True, max_length=254, check=check_email)}
RESET_CONFIRM = {
    "token": Field(str, required=True, max_length=200),
    "new_password": Field(str, required=True, max_length=128, check=password_problem),
}


def _settings() -> Settings:
    settings: Settings = current_app.config["MONTERO_SETTINGS"]
    return settings


def build_mail_queue(app: Flask, settings: Settings) -> MailQueue:
    """PASSWORD_RESET_LIMIT_ACCOUNT ("3 per hour"): reset mails per account within the window."""
    try:
        limit = parse_limit(settings.PASSWORD_RESET_LIMIT_ACCOUNT)
    except ValueError:
        raise ConfigError(
            "PASSWORD_RESET_LIMIT_ACCOUNT: expected a limit such as '3 per hour', "
            f"got {settings.PASSWORD_RESET_LIMIT_ACCOUNT!r}"
        ) from None
    return MailQueue(app, settings, limit.amount, limit.get_expiry())


def build_throttle(settings: Settings) -> LoginThrottle:
    """LOGIN_LIMIT_ACCOUNT ("5 per 15 minutes"): failures per account and address before the delay starts."""
    try:
        limit = parse_limit(settings.LOGIN_LIMIT_ACCOUNT)
    except ValueError:
        raise ConfigError(
            f"LOGIN_LIMIT_ACCOUNT: expected a limit such as '5 per 15 minutes', got {settings.LOGIN_LIMIT_ACCOUNT!r}"
        ) from None
    return LoginThrottle(settings.RATELIMIT_STORAGE_URL, limit.amount, limit.get_expiry())


def _throttle() -> LoginThrottle:
    throttle: LoginThrottle = current_app.extensions["montero_login_throttle"]
    return throttle


def _address() -> str:
    return get_remote_address() or "?"


def _refuse_if_throttled(account: str) -> None:
    wait = _throttle().retry_after(account, _address())
    if wait > 0:
        raise APIError(
            429,
            f"Too many failed attempts for this account from your address; try again in {wait} s.",
            code="rate_limited",
            headers={"Retry-After": str(wait)},
        )


def _revoke_sessions(user: User, keep: AuthSession | None = None) -> None:
    stmt = update(AuthSession).where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
    if keep is not None:
        stmt = stmt.where(AuthSession.id != keep.id)
    db_session().execute(stmt.values(revoked_at=utcnow()))


def _revoke_reset_tokens(user: User) -> None:
    # Every outstanding reset link dies with a reset or a password change, not only the one used.
    db_session().execute(
        update(PasswordResetToken)
        .where(PasswordResetToken.user_id == user.id, PasswordResetToken.used_at.is_(None))
        .values(used_at=utcnow())
    )


def build_blueprint(limiter: Limiter, settings: Settings) -> Blueprint:
    bp = Blueprint("auth", __name__, url_prefix="/api/auth")

    @bp.post("/register")
    def register() -> ResponseReturnValue:
        # Closed registration (the default) and choosing a role are for admins only.
        if not _settings().REGISTRATION_OPEN:
            _require_admin()
        data = parse(json_body(), REGISTER)
        if "role" in data:
            _require_admin()
        session = db_session()
        email = data["email"].lower()
        if session.scalar(select(func.count()).select_from(User).where(User.email == email)):
            raise APIError(409, "An account with this e-mail already exists.")
        user = User(
            email=email,
            full_name=data.get("full_name", ""),
            role=data.get("role", "staff"),
            password_hash=hash_password(data["password"]),
        )
        session.add(user)
        session.commit()
        log.info("account created: %s (%s)", user.email, user.role)
        return jsonify(user=user.to_dict()), 201

    @bp.post("/login")
    @limiter.limit(settings.LOGIN_LIMIT_ADDRESS, key_func=lambda: "address:" + (get_remote_address() or "?"))
    def login() -> ResponseReturnValue:
        data = parse(json_body(), LOGIN)
        account = data["email"].lower()
        _refuse_if_throttled(account)
        session = db_session()
        user = session.scalar(select(User).where(User.email == account))
        if not verify_password(user, data["password"]) or user is None or not user.is_active:
            session.rollback()
            _throttle().failed(account, _address())
            raise APIError(401, "Invalid e-mail or password.", code="invalid_credentials")
        _throttle().succeeded(account, _address())
        token, auth = start_session(user)
        session.commit()
        return jsonify(
            token=token, token_type="Bearer", expires_at=auth.expires_at.isoformat() + "Z", user=user.to_dict()
        )

    @bp.post("/logout")
    @login_required
    def logout() -> ResponseReturnValue:
        auth = current_session()
        auth.revoked_at = utcnow()
        db_session().commit()
        return jsonify(status="logged out")

    @bp.get("/me")
    @login_required
    def me() -> ResponseReturnValue:
        return jsonify(user=current_user().to_dict())

    @bp.post("/password")
    @limiter.limit(settings.LOGIN_LIMIT_ADDRESS, key_func=lambda: "password:" + (get_remote_address() or "?"))
    @login_required
    def change_password() -> ResponseReturnValue:
        data = parse(json_body(), CHANGE)
        user = current_user()
        # A stolen session must not become an unlimited oracle for the account's password.
        _refuse_if_throttled(user.email)
        if not verify_password(user, data["current_password"]):
            _throttle().failed(user.email, _address())
            raise APIError(
                400,
                "The current password is wrong.",
                code="invalid_credentials",
                fields={"current_password": "wrong password"},
            )
        _throttle().succeeded(user.email, _address())
        user.password_hash = hash_password(data["new_password"])
        _revoke_sessions(user, keep=current_session())  # other devices must log in again
        _revoke_reset_tokens(user)
        db_session().commit()
        return jsonify(status="password changed")

    @bp.post("/password-reset")
    @limiter.limit(settings.LOGIN_LIMIT_ADDRESS, key_func=lambda: "reset:" + (get_remote_address() or "?"))
    def request_reset() -> ResponseReturnValue:
        data = parse(json_body(), RESET_REQUEST)
        # The same work whether or not the account exists (one queued row), so neither the answer nor its
        # timing tells accounts apart; the queue looks the account up, limits and mails (mailqueue.py).
        session = db_session()
        enqueue_password_reset(session, data["email"].lower())
        session.commit()
        response = jsonify(status="If the account exists, a reset link has been sent.")
        # Wake the sender once the answer is out: started earlier, its work (more for a real account) competed
        # with this request for the interpreter and showed in the answer's timing.
        response.call_on_close(_mail_queue().wake)
        return response, 202

    @bp.post("/password-reset/confirm")
    def confirm_reset() -> ResponseReturnValue:
        data = parse(json_body(), RESET_CONFIRM)
        session = db_session()
        reset = session.scalar(
            select(PasswordResetToken).where(PasswordResetToken.token_hash == token_digest(data["token"]))
        )
        if reset is None or reset.used_at is not None or reset.expires_at <= utcnow():
            raise APIError(400, "The reset token is invalid, expired or already used.", code="invalid_token")
        reset.used_at = utcnow()
        reset.user.password_hash = hash_password(data["new_password"])
        _revoke_sessions(reset.user)
        _revoke_reset_tokens(reset.user)
        session.commit()
        return jsonify(status="password reset")

    return bp


def _mail_queue() -> MailQueue:
    queue: MailQueue = current_app.extensions["montero_mail_queue"]
    return queue


def _require_admin() -> None:
    if current_user().role != "admin":
        raise APIError(403, "Only an admin can create accounts or choose a role.")
