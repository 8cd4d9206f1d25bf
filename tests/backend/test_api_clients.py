"""Clients and affiliations: CRUD, filtering, pagination and the audit trail."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

H = dict[str, str]


def new_client(client: FlaskClient, headers: H, **fields: Any) -> dict[str, Any]:
    body = {"name": "Constructora Andina", "nit": "900123456-1", "city": "Bogotá"} | fields
    response = client.post("/api/clients", json=body, headers=headers)
    assert response.status_code == 201, response.get_json()
    result: dict[str, Any] = response.get_json()["client"]
    return result


def test_requires_login(client: FlaskClient) -> None:
    response = client.get("/api/clients")
    assert response.status_code == 401
    assert set(response.get_json()["error"]) == {"status", "code", "message"}


def test_client_crud_and_audit(client: FlaskClient, admin_headers: H, staff_headers: H) -> None:
    created = new_client(client, staff_headers, email="rrhh@andina.co")
    cid = created["id"]
    assert created["active"] is True and created["email"] == "rrhh@andina.co"

    fetched = client.get(f"/api/clients/{cid}", headers=staff_headers).get_json()["client"]
    assert fetched["name"] == "Constructora Andina" and fetched["affiliations_count"] == 0

    updated = client.patch(f"/api/clients/{cid}", json={"city": "Medellín", "active": False}, headers=staff_headers)
    assert updated.status_code == 200
    assert updated.get_json()["client"]["city"] == "Medellín"

    assert client.delete(f"/api/clients/{cid}", headers=admin_headers).status_code == 200
    assert client.get(f"/api/clients/{cid}", headers=admin_headers).status_code == 404

    trail = client.get(f"/api/audit?entity=client&entity_id={cid}", headers=admin_headers).get_json()
    actions = [(e["action"], e["actor_email"]) for e in reversed(trail["items"])]
    assert actions == [
        ("create", "staff@montero.test"),
        ("update", "staff@montero.test"),
        ("delete", "admin@montero.test"),
    ]
    update = trail["items"][1]
    assert update["changes"] == {"city": {"old": "Bogotá", "new": "Medellín"}, "active": {"old": True, "new": False}}
    assert trail["items"][0]["changes"]["nit"] == {"old": "900123456-1", "new": None}


def test_duplicate_nit_is_a_conflict(client: FlaskClient, staff_headers: H) -> None:
    first = new_client(client, staff_headers)
    other = new_client(client, staff_headers, nit="800-2")
    again = client.post("/api/clients", json={"name": "Copy", "nit": "900123456-1"}, headers=staff_headers)
    assert again.status_code == 409
    clash = client.patch(f"/api/clients/{other['id']}", json={"nit": first["nit"]}, headers=staff_headers)
    assert clash.status_code == 409


def test_filtering_and_pagination(client: FlaskClient, staff_headers: H) -> None:
    for i in range(25):
        new_client(
            client,
            staff_headers,
            name=f"Empresa {i:02d}",
            nit=f"NIT-{i:02d}",
            city="Cali" if i % 2 else "Bogotá",
            active=i % 5 != 0,
        )
    page = client.get("/api/clients?per_page=10&page=3", headers=staff_headers).get_json()
    assert (page["total"], page["pages"], page["page"], len(page["items"])) == (25, 3, 3, 5)
    assert page["items"][0]["name"] == "Empresa 20"

    cali = client.get("/api/clients?city=cali&per_page=100", headers=staff_headers).get_json()
    assert cali["total"] == 12 and all(c["city"] == "Cali" for c in cali["items"])
    inactive = client.get("/api/clients?active=false", headers=staff_headers).get_json()
    assert inactive["total"] == 5
    search = client.get("/api/clients?q=empresa 1", headers=staff_headers).get_json()
    assert search["total"] == 10
    by_nit = client.get("/api/clients?q=nit-07", headers=staff_headers).get_json()
    assert [c["name"] for c in by_nit["items"]] == ["Empresa 07"]
    beyond = client.get("/api/clients?page=99", headers=staff_headers).get_json()
    assert beyond["items"] == [] and beyond["total"] == 25


def test_affiliations_crud_filters_and_audit(client: FlaskClient, admin_headers: H, staff_headers: H) -> None:
    cid = new_client(client, staff_headers)["id"]
    other = new_client(client, staff_headers, nit="800-9", name="Otra")["id"]
    url = f"/api/clients/{cid}/affiliations"
    body = {
        "employee_name": "María Pérez",
        "document_number": "1020304050",
        "eps": "Sura",
        "arl": "Positiva",
        "pension_fund": "Porvenir",
        "salary": 2_500_000,
        "start_date": "2024-02-01",
    }
    created = client.post(url, json=body, headers=staff_headers)
    assert created.status_code == 201
    aff = created.get_json()["affiliation"]
    assert aff["status"] == "active" and aff["start_date"] == "2024-02-01" and aff["client_id"] == cid
    client.post(
        url,
        json=body | {"employee_name": "Juan Gómez", "document_number": "77", "eps": "Sanitas"},
        headers=staff_headers,
    )
    client.post(f"/api/clients/{other}/affiliations", json=body, headers=staff_headers)  # same person, other company

    assert client.post(url, json=body, headers=staff_headers).status_code == 409
    listing = client.get(url, headers=staff_headers).get_json()
    assert [a["employee_name"] for a in listing["items"]] == ["Juan Gómez", "María Pérez"]
    assert client.get("/api/affiliations?eps=sura", headers=staff_headers).get_json()["total"] == 2
    assert client.get(f"/api/affiliations?eps=sura&client_id={cid}", headers=staff_headers).get_json()["total"] == 1
    assert client.get("/api/affiliations?document_number=77", headers=staff_headers).get_json()["total"] == 1

    retired = client.patch(
        f"/api/affiliations/{aff['id']}", json={"status": "retired", "end_date": "2025-01-31"}, headers=staff_headers
    )
    assert retired.status_code == 200 and retired.get_json()["affiliation"]["status"] == "retired"
    backwards = client.patch(f"/api/affiliations/{aff['id']}", json={"end_date": "2020-01-01"}, headers=staff_headers)
    assert backwards.status_code == 400
    assert client.get("/api/affiliations?status=retired", headers=staff_headers).get_json()["total"] == 1

    assert client.delete(f"/api/clients/{cid}", headers=admin_headers).status_code == 409  # still has affiliations
    assert client.delete(f"/api/affiliations/{aff['id']}", headers=staff_headers).status_code == 403
    assert client.delete(f"/api/affiliations/{aff['id']}", headers=admin_headers).status_code == 200

    trail = client.get(f"/api/audit?entity=affiliation&entity_id={aff['id']}", headers=admin_headers).get_json()
    assert [e["action"] for e in trail["items"]] == ["delete", "update", "create"]
    assert trail["items"][1]["changes"]["status"] == {"old": "active", "new": "retired"}
    assert trail["items"][1]["changes"]["end_date"] == {"old": None, "new": "2025-01-31"}
