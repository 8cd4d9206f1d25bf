"""PostgreSQL through DATABASE_URL (psycopg 3): migrations and the API on a throwaway local server
(conftest.py's postgres_url; the fuzz tests also run on it).

Skips, saying why, where no PostgreSQL server binaries are installed (Debian: apt-get install postgresql).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, create_admin, login
from montero_api import create_app
from test_api_migrations import alembic_config


def test_migrations_and_api_on_postgres(postgres_url: str, tmp_path: Path, redis_url: str) -> None:
    config = alembic_config(postgres_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    command.upgrade(config, "head")

    app = create_app(
        {
            "FLASK_ENV": "development",
            "DATABASE_URL": postgres_url,
            "LOG_DIR": str(tmp_path),
            "RATELIMIT_STORAGE_URL": redis_url,
            "LOG_LEVEL": "WARNING",
        }
    )
    client = app.test_client()
    health = client.get("/health").get_json()
    assert health["status"] == "ok"
    assert health["database"]["backend"] == "postgresql" and health["database"]["revision"]

    create_admin(app)
    headers = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    created = client.post("/api/clients", json={"name": "Andina", "nit": "900-1"}, headers=headers)
    assert created.status_code == 201
    cid = created.get_json()["client"]["id"]
    assert client.post("/api/clients", json={"name": "Dup", "nit": "900-1"}, headers=headers).status_code == 409
    aff = client.post(
        f"/api/clients/{cid}/affiliations",
        json={"employee_name": "Ana", "document_number": "1", "start_date": "2024-01-01"},
        headers=headers,
    )
    assert aff.status_code == 201
    assert client.get("/api/clients?q=andi", headers=headers).get_json()["total"] == 1
    trail = client.get("/api/audit", headers=headers).get_json()
    assert [e["action"] for e in trail["items"]] == ["create", "create"]
