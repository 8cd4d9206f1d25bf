"""Audit trail: who changed what, written in the same transaction as the change itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import select

from .database import db_session
from .models import AuditLog
from .pagination import paginate
from .security import admin_required, current_user, login_required
from .validation import query_int, query_str


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def snapshot(obj: Any, fields: list[str]) -> dict[str, Any]:
    return {name: _plain(getattr(obj, name)) for name in fields}


def record(action: str, entity: str, entity_id: int, changes: dict[str, Any]) -> None:
    user = current_user()
    db_session().add(
        AuditLog(
            user_id=user.id, actor_email=user.email, action=action, entity=entity, entity_id=entity_id, changes=changes
        )
    )


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """{"field": {"old": ..., "new": ...}} for the fields whose value changed."""
    keys = list(dict.fromkeys([*before, *after]))
    return {k: {"old": before.get(k), "new": after.get(k)} for k in keys if before.get(k) != after.get(k)}


def build_blueprint() -> Blueprint:
    bp = Blueprint("audit", __name__, url_prefix="/api/audit")

    @bp.get("")
    @login_required
    @admin_required
    def list_entries() -> ResponseReturnValue:
        stmt = select(AuditLog)
        if entity := query_str("entity", 40):
            stmt = stmt.where(AuditLog.entity == entity)
        if (entity_id := query_int("entity_id", 0, 0, 2**31)) > 0:
            stmt = stmt.where(AuditLog.entity_id == entity_id)
        if (user_id := query_int("user_id", 0, 0, 2**31)) > 0:
            stmt = stmt.where(AuditLog.user_id == user_id)
        if action := query_str("action", 20):
            stmt = stmt.where(AuditLog.action == action)
        return jsonify(paginate(stmt.order_by(AuditLog.id.desc()), AuditLog.to_dict))

    return bp
