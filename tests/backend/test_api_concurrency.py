"""Several OS processes write through gunicorn's workers at once: SQLite (WAL + busy timeout + BEGIN
IMMEDIATE for writes) must never answer "database is locked"."""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Callable
from pathlib import Path

import requests
from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, Gunicorn, create_admin
from flask import Flask

PROCESSES = 4
WRITES_PER_PROCESS = 12


def writer(args: tuple[str, str, int]) -> list[tuple[int, str]]:
    """One client process: create clients, update each, add an affiliation; returns any non-2xx answers."""
    url, token, worker = args
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[tuple[int, str]] = []
    with requests.Session() as http:
        for i in range(WRITES_PER_PROCESS):
            created = http.post(
                f"{url}/api/clients",
                json={"name": f"P{worker} C{i}", "nit": f"{worker}-{i}"},
                headers=headers,
                timeout=30,
            )
            if created.status_code != 201:
                failures.append((created.status_code, created.text))
                continue
            cid = created.json()["client"]["id"]
            for response in (
                http.patch(f"{url}/api/clients/{cid}", json={"city": "Cali"}, headers=headers, timeout=30),
                http.post(
                    f"{url}/api/clients/{cid}/affiliations",
                    json={"employee_name": f"E{i}", "document_number": str(i)},
                    headers=headers,
                    timeout=30,
                ),
                http.get(f"{url}/api/clients?per_page=5", headers=headers, timeout=30),
            ):
                if response.status_code >= 300:
                    failures.append((response.status_code, response.text))
    return failures


def test_parallel_writers_never_see_database_is_locked(
    gunicorn: Callable[..., Gunicorn], make_app: Callable[..., Flask], db_path: Path
) -> None:
    create_admin(make_app())
    server = gunicorn(workers=4, DEFAULT_RATE_LIMIT="100000 per minute", LOG_LEVEL="INFO")
    token = requests.post(
        server.url + "/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}, timeout=10
    ).json()["token"]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(PROCESSES) as pool:
        results = pool.map(writer, [(server.url, token, w) for w in range(PROCESSES)])
    log = server.stop()

    failures = [f for result in results for f in result]
    assert failures == []
    assert "database is locked" not in log
    expected = PROCESSES * WRITES_PER_PROCESS
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM clients").fetchone()[0] == expected
        assert conn.execute("SELECT COUNT(*) FROM affiliations").fetchone()[0] == expected
        assert conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 3 * expected
    # Requests were spread over several worker processes, not funnelled through one.
    pids = {line.split("[")[1].split("]")[0] for line in log.splitlines() if "montero_api.request" in line}
    assert len(pids) >= 2
