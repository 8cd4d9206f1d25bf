"""PostgreSQL through DATABASE_URL (psycopg 3): migrations and the API on a throwaway local server.

Skips, saying why, where no PostgreSQL server binaries are installed (Debian: apt-get install postgresql).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, create_admin, free_port, login
from montero_api import create_app
from test_api_migrations import alembic_config


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin); apt-get install postgresql")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        as_user = ["runuser", "-u", "postgres", "--"]
    # Directly under /tmp: pytest's own temp root is private to root, which the postgres user cannot enter.
    base = Path(tempfile.mkdtemp(prefix="montero-pg-"))
    if as_user:
        postgres = pwd.getpwnam("postgres")
        os.chown(base, postgres.pw_uid, postgres.pw_gid)
    data = base / "data"
    port = free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "montero", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    subprocess.run(
        [
            *as_user,
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-w",
            "-l",
            str(base / "pg.log"),
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        subprocess.run(
            [*as_user, str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "montero", "montero"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql://montero@127.0.0.1:{port}/montero"
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


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
