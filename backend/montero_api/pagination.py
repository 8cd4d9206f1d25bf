"""Page-number pagination shared by every list endpoint: ?page=1&per_page=20 (max 100)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, func, select

from .database import db_session
from .validation import query_int

MAX_PER_PAGE = 100


def paginate(stmt: Select[Any], render: Callable[[Any], dict[str, Any]]) -> dict[str, Any]:
    page = query_int("page", 1, 1, 10**6)
    per_page = query_int("per_page", 20, 1, MAX_PER_PAGE)
    session = db_session()
    total = int(session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0)
    rows = session.scalars(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    return {
        "items": [render(row) for row in rows],
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": (total + per_page - 1) // per_page,
    }
