"""Password hashing (argon2id), opaque bearer tokens and the login/role guards.

Tokens are random; only HMAC-SHA256(SECRET_KEY, token) is stored, in the database. That keeps no state
in any worker process (every gunicorn worker and replica sees the same sessions) and makes logout and
password changes revoke tokens for real, which a self-contained signed token could not.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app, g, request
from sqlalchemy import select

from .database import db_session
from .errors import APIError
from .models import AuthSession, User, utcnow

P = ParamSpec("P")
R = TypeVar("R")

# OWASP's argon2id baseline (19 MiB, 2 passes, 1 lane): argon2-cffi's default (64 MiB, 3 passes, 4 lanes)
# costs ~0.6 s per login on a 2-core host, which turns a burst of logins into a denial of service.
# Hashes record their parameters, so raising these later rehashes accounts on their next login.
_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_dummy_hash: str | None = None

PASSWORD_MIN = 8
PASSWORD_MAX = 128


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _dummy() -> str:
    # Verifying against this when the account does not exist keeps login timing the same either way.
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = _hasher.hash("montero-dummy-password")
    return _dummy_hash


def verify_password(user: User | None, password: str) -> bool:
    try:
        ok = _hasher.verify(user.password_hash if user else _dummy(), password)
    except (VerificationError, InvalidHashError):
        return False
    if user is None:
        return False
    if ok and _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = _hasher.hash(password)
    return bool(ok)


def password_problem(value: str) -> str | None:
    if len(value) < PASSWORD_MIN:
        return f"must be at least {PASSWORD_MIN} characters"
    if len(value) > PASSWORD_MAX:
        return f"must be at most {PASSWORD_MAX} characters"
    return None


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()


def start_session(user: User) -> tuple[str, AuthSession]:
    token = new_token()
    hours = current_app.config["MONTERO_SETTINGS"].AUTH_TOKEN_TTL_HOURS
    auth = AuthSession(token_hash=token_digest(token), user=user, expires_at=utcnow() + dt.timedelta(hours=hours))
    db_session().add(auth)
    return token, auth


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def current_session() -> AuthSession:
    """The caller's live session, or a 401."""
    cached: AuthSession | None = g.get("auth_session")
    if cached is not None:
        return cached
    token = _bearer_token()
    if token is None or len(token) > 200:
        raise APIError(401, "Authentication required: send 'Authorization: Bearer <token>'.")
    auth = db_session().scalar(select(AuthSession).where(AuthSession.token_hash == token_digest(token)))
    if auth is None or auth.revoked_at is not None or auth.expires_at <= utcnow() or not auth.user.is_active:
        raise APIError(401, "Invalid or expired token; log in again.")
    g.auth_session = auth
    return auth


def current_user() -> User:
    return current_session().user


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        current_session()
        return view(*args, **kwargs)

    return wrapper


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if current_user().role != "admin":
            raise APIError(403, "This action needs the admin role.")
        return view(*args, **kwargs)

    return wrapper
