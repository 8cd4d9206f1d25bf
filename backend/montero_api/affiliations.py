"""Employees' affiliations (EPS, ARL, pension fund) of a client company: CRUD, filters, audit."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy import Select, func, select

from . import audit
from .clients import apply_update, commit_or_conflict, get_or_404
from .database import db_session
from .errors import APIError
from .models import AFFILIATION_STATUSES, Affiliation, Client
from .pagination import paginate
from .security import admin_required, login_required
from .validation import Field, json_body, parse, query_int, query_str

FIELDS = {
    "employee_name": Field(str, required=True, max_length=200),
    "document_number": Field(str, required=True, max_length=32),
    "eps": Field(str, nullable=True, max_length=100),
    "arl": Field(str, nullable=True, max_length=100),
    "pension_fund": Field(str, nullable=True, max_length=100),
    "salary": Field(int, nullable=True),
    "start_date": Field(dt.date, nullable=True),
    "end_date": Field(dt.date, nullable=True),
    "status": Field(str, choices=AFFILIATION_STATUSES),
}
AUDITED = list(FIELDS)
DUPLICATE = "This client already has an affiliation for that document number."


def _filtered(stmt: Select[tuple[Affiliation]]) -> Select[tuple[Affiliation]]:
    if status := query_str("status", 20):
        stmt = stmt.where(Affiliation.status == status)
    if document := query_str("document_number", 32):
        stmt = stmt.where(Affiliation.document_number == document)
    if eps := query_str("eps", 100):
        stmt = stmt.where(func.lower(Affiliation.eps) == eps.lower())
    if q := query_str("q"):
        stmt = stmt.where(func.lower(Affiliation.employee_name).like(f"%{q.lower()}%"))
    return stmt.order_by(Affiliation.employee_name, Affiliation.id)


def _check_dates(start: dt.date | None, end: dt.date | None) -> None:
    if start and end and end < start:
        raise APIError(400, "Invalid input.", code="validation_error", fields={"end_date": "is before start_date"})


def _duplicate(client_id: int, document: str, exclude_id: int | None = None) -> bool:
    stmt = (
        select(func.count())
        .select_from(Affiliation)
        .where(Affiliation.client_id == client_id, Affiliation.document_number == document)
    )
    if exclude_id is not None:
        stmt = stmt.where(Affiliation.id != exclude_id)
    return bool(db_session().scalar(stmt))


def build_blueprint() -> Blueprint:
    bp = Blueprint("affiliations", __name__, url_prefix="/api")

    @bp.get("/affiliations")
    @login_required
    def list_affiliations() -> ResponseReturnValue:
        stmt = select(Affiliation)
        if (client_id := query_int("client_id", 0, 0, 2**62)) > 0:
            stmt = stmt.where(Affiliation.client_id == client_id)
        return jsonify(paginate(_filtered(stmt), Affiliation.to_dict))

    @bp.get("/clients/<int:client_id>/affiliations")
    @login_required
    def list_client_affiliations(client_id: int) -> ResponseReturnValue:
        client = get_or_404(Client, client_id, "Client")
        return jsonify(
            paginate(_filtered(select(Affiliation).where(Affiliation.client_id == client.id)), Affiliation.to_dict)
        )

    @bp.post("/clients/<int:client_id>/affiliations")
    @login_required
    def create_affiliation(client_id: int) -> ResponseReturnValue:
        client = get_or_404(Client, client_id, "Client")
        data = parse(json_body(), FIELDS)
        _check_dates(data.get("start_date"), data.get("end_date"))
        if _duplicate(client.id, data["document_number"]):
            raise APIError(409, DUPLICATE)
        affiliation = Affiliation(client_id=client.id, **data)
        session = db_session()
        session.add(affiliation)
        session.flush()
        audit.record(
            "create",
            "affiliation",
            affiliation.id,
            audit.diff({}, {"client_id": client.id, **audit.snapshot(affiliation, AUDITED)}),
        )
        commit_or_conflict(DUPLICATE)
        return jsonify(affiliation=affiliation.to_dict()), 201

    @bp.get("/affiliations/<int:affiliation_id>")
    @login_required
    def get_affiliation(affiliation_id: int) -> ResponseReturnValue:
        return jsonify(affiliation=get_or_404(Affiliation, affiliation_id, "Affiliation").to_dict())

    @bp.patch("/affiliations/<int:affiliation_id>")
    @login_required
    def update_affiliation(affiliation_id: int) -> ResponseReturnValue:
        affiliation = get_or_404(Affiliation, affiliation_id, "Affiliation")
        data = parse(json_body(), FIELDS, partial=True)
        _check_dates(data.get("start_date", affiliation.start_date), data.get("end_date", affiliation.end_date))
        if "document_number" in data and _duplicate(affiliation.client_id, data["document_number"], affiliation.id):
            raise APIError(409, DUPLICATE)
        apply_update(affiliation, data, "affiliation", AUDITED)
        commit_or_conflict(DUPLICATE)
        return jsonify(affiliation=affiliation.to_dict())

    @bp.delete("/affiliations/<int:affiliation_id>")
    @login_required
    @admin_required
    def delete_affiliation(affiliation_id: int) -> ResponseReturnValue:
        affiliation = get_or_404(Affiliation, affiliation_id, "Affiliation")
        audit.record(
            "delete",
            "affiliation",
            affiliation.id,
            audit.diff({"client_id": affiliation.client_id, **audit.snapshot(affiliation, AUDITED)}, {}),
        )
        db_session().delete(affiliation)
        db_session().commit()
        return jsonify(status="deleted", id=affiliation_id)

    return bp
