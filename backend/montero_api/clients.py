"""Clients (companies): CRUD with filtering, pagination and an audit trail."""

from __future__ import annotations

from typing import Any, TypeVar

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError

from . import audit
from .database import db_session
from .errors import APIError
from .models import Affiliation, Base, Client
from .pagination import paginate
from .security import admin_required, login_required
from .validation import Field, check_email, json_body, parse, query_bool, query_str

M = TypeVar("M", bound=Base)

CLIENT_FIELDS = {
    "name": Field(str, required=True, max_length=200),
    "nit": Field(str, required=True, max_length=32),
    "email": Field(str, nullable=True, max_length=254, check=check_email),
    "phone": Field(str, nullable=True, max_length=40),
    "city": Field(str, nullable=True, max_length=100),
    "active": Field(bool),
}
AUDITED = list(CLIENT_FIELDS)


def get_or_404(model: type[M], object_id: int, label: str) -> M:
    # Ids beyond SQLite's 64-bit integers cannot exist; asking the driver would overflow instead.
    obj = db_session().get(model, object_id) if 0 < object_id < 2**63 else None
    if obj is None:
        raise APIError(404, f"{label} {object_id} not found.")
    return obj


def commit_or_conflict(message: str) -> None:
    try:
        db_session().commit()
    except IntegrityError:
        db_session().rollback()
        raise APIError(409, message) from None


def _nit_taken(nit: str, exclude_id: int | None = None) -> bool:
    stmt = select(func.count()).select_from(Client).where(Client.nit == nit)
    if exclude_id is not None:
        stmt = stmt.where(Client.id != exclude_id)
    return bool(db_session().scalar(stmt))


def build_blueprint() -> Blueprint:
    bp = Blueprint("clients", __name__, url_prefix="/api/clients")

    @bp.get("")
    @login_required
    def list_clients() -> ResponseReturnValue:
        stmt = select(Client)
        if q := query_str("q"):
            like = f"%{q.lower()}%"
            stmt = stmt.where(or_(func.lower(Client.name).like(like), func.lower(Client.nit).like(like)))
        if city := query_str("city", 100):
            stmt = stmt.where(func.lower(Client.city) == city.lower())
        if (active := query_bool("active")) is not None:
            stmt = stmt.where(Client.active.is_(active))
        return jsonify(paginate(stmt.order_by(Client.name, Client.id), Client.to_dict))

    @bp.post("")
    @login_required
    def create_client() -> ResponseReturnValue:
        data = parse(json_body(), CLIENT_FIELDS)
        if _nit_taken(data["nit"]):
            raise APIError(409, f"A client with NIT {data['nit']} already exists.")
        client = Client(**data)
        session = db_session()
        session.add(client)
        session.flush()
        audit.record("create", "client", client.id, audit.diff({}, audit.snapshot(client, AUDITED)))
        commit_or_conflict(f"A client with NIT {data['nit']} already exists.")
        return jsonify(client=client.to_dict()), 201

    @bp.get("/<int:client_id>")
    @login_required
    def get_client(client_id: int) -> ResponseReturnValue:
        client = get_or_404(Client, client_id, "Client")
        count = db_session().scalar(
            select(func.count()).select_from(Affiliation).where(Affiliation.client_id == client.id)
        )
        return jsonify(client={**client.to_dict(), "affiliations_count": count})

    @bp.patch("/<int:client_id>")
    @login_required
    def update_client(client_id: int) -> ResponseReturnValue:
        client = get_or_404(Client, client_id, "Client")
        data = parse(json_body(), CLIENT_FIELDS, partial=True)
        if "nit" in data and _nit_taken(data["nit"], exclude_id=client.id):
            raise APIError(409, f"A client with NIT {data['nit']} already exists.")
        apply_update(client, data, "client", AUDITED)
        commit_or_conflict("The update conflicts with another client.")
        return jsonify(client=client.to_dict())

    @bp.delete("/<int:client_id>")
    @login_required
    @admin_required
    def delete_client(client_id: int) -> ResponseReturnValue:
        client = get_or_404(Client, client_id, "Client")
        session = db_session()
        if session.scalar(select(func.count()).select_from(Affiliation).where(Affiliation.client_id == client.id)):
            raise APIError(409, "The client still has affiliations; delete or move them first.")
        audit.record("delete", "client", client.id, audit.diff(audit.snapshot(client, AUDITED), {}))
        session.delete(client)
        session.commit()
        return jsonify(status="deleted", id=client_id)

    return bp


def apply_update(obj: Any, data: dict[str, Any], entity: str, fields: list[str]) -> None:
    before = audit.snapshot(obj, fields)
    for name, value in data.items():
        setattr(obj, name, value)
    changes = audit.diff(before, audit.snapshot(obj, fields))
    if changes:
        audit.record("update", entity, obj.id, changes)
