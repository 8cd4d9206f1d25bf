"""Pruning of login sessions and reset tokens that can no longer be used (issue 12 point 7: they piled up forever).

A row goes once it has been dead (expired, revoked or used) for RETENTION: a day of recent history stays for
whoever looks into an incident. Reset tokens also stay for the per-account limit's window, which counts them.
The mail queue's thread runs this at most once an hour per process; `flask --app wsgi prune` runs it now.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import delete, or_
from sqlalchemy.orm import Session

from .models import AuthSession, PasswordResetToken

RETENTION = dt.timedelta(days=1)
PRUNE_INTERVAL_SECONDS = 3600.0


def prune_expired(session: Session, now: dt.datetime, minimum_age: dt.timedelta = RETENTION) -> dict[str, int]:
    """Delete dead rows older than RETENTION (reset tokens: and older than `minimum_age`); the caller commits."""
    cutoff = now - RETENTION
    sessions = session.execute(
        delete(AuthSession).where(or_(AuthSession.expires_at < cutoff, AuthSession.revoked_at < cutoff))
    )
    token_cutoff = now - max(RETENTION, minimum_age)
    tokens = session.execute(
        delete(PasswordResetToken).where(
            or_(PasswordResetToken.expires_at < token_cutoff, PasswordResetToken.used_at < token_cutoff),
            PasswordResetToken.created_at < token_cutoff,
        )
    )
    return {
        "sessions": int(getattr(sessions, "rowcount", 0) or 0),
        "reset_tokens": int(getattr(tokens, "rowcount", 0) or 0),
    }
