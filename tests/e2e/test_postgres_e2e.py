"""PostgreSQL profile on a real engine: the API works on it, migrations ran once for two
replicas, and backup -> change/delete -> restore brings every row back exactly."""

from __future__ import annotations

import json
import secrets
import urllib.request
from typing import Any

from montero_ops.project import find_project
from montero_ops.services.backups import postgres as backup_postgres

ADMIN = ("pg-admin@example.com", "Pg-Admin-pass-123")


def _checksums(t: Any) -> dict[str, str]:
    tables = backup_postgres._psql(t, "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM "
                                      "information_schema.tables WHERE table_schema='public'").split(",")
    return {name: backup_postgres._psql(
        t, f"SELECT md5(coalesce(string_agg(r::text, '|' ORDER BY r::text), '')) FROM \"{name}\" r")
        for name in tables}


def _post(url: str, body: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def test_postgres_profile_api_and_backup_round_trip(stack_project: Any) -> None:
    p = stack_project
    p.write_env(SECRET_KEY=secrets.token_hex(32), POSTGRES_PASSWORD=secrets.token_hex(16))
    python_base = p.env.get("MONTERO_PYTHON_IMAGE", "")
    if python_base.startswith("montero-base:"):
        # No registry: the postgres image is built from the local Debian base (apt inside the build).
        p.write_env(MONTERO_POSTGRES_BASE_IMAGE=python_base)
    done = p.run_montero("up", "--profile", "postgres", "--scale", "app=2", timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    p.compose_files.append(p.root / "docker" / "compose.postgres.yml")
    p.profiles.append("postgres")

    status, body = p.wait_http("/health", timeout=60)
    assert status == 200, body
    assert json.loads(body)["database"]["backend"] == "postgresql"
    # Two replicas, one migration run: the entrypoint's lock let only the first one upgrade, so each
    # revision is applied once in all (not once per replica).
    revisions = list((p.root / "backend" / "migrations" / "versions").glob("[0-9]*.py"))
    logs = p.logs("app", tail=400)
    assert revisions and logs.count("Running upgrade") == len(revisions), logs[-3000:]

    created = p.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email", ADMIN[0],
                        "--password", ADMIN[1], "--name", "PG Admin")
    assert created.returncode == 0, created.stderr
    base = p.url("")
    _, login = _post(f"{base}/api/auth/login", {"email": ADMIN[0], "password": ADMIN[1]})
    token = login["token"]
    for i in range(5):
        status, _ = _post(f"{base}/api/clients", {"name": f"Cliente {i}", "nit": f"900{i:06d}"}, token)
        assert status == 201

    project = find_project(p.root, project_name=p.name)
    t = backup_postgres.target(project)
    before = _checksums(t)
    backups = p.root / "backups"
    done = p.run_montero("backup", "postgres", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    folder = backups / manifest["id"]
    meta = json.loads((folder / "postgres.json").read_text())
    assert meta["tables"]["clients"] == 5 and meta["revision"]
    assert [f["role"] for f in manifest["files"]] == ["postgres-dump", "postgres-meta"]
    assert backup_postgres.verify(project, folder)["tables"] == meta["tables"]
    verified = p.run_montero("backups", "verify", manifest["id"])
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # The default `backup` (SQLite + Redis) would copy ./data's stale SQLite file: refused, nothing written.
    refused = p.run_montero("backup")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "this stack runs on PostgreSQL" in refused.stderr and "montero backup postgres" in refused.stderr
    assert sorted(d.name for d in backups.iterdir() if not d.name.startswith(".")) == [manifest["id"]]

    # Change and delete, then restore: every table is back exactly.
    backup_postgres._psql(t, "UPDATE clients SET name = 'changed' WHERE id = (SELECT min(id) FROM clients)")
    backup_postgres._psql(t, "DELETE FROM affiliations; DELETE FROM clients WHERE id > (SELECT min(id) FROM clients)")
    assert _checksums(t) != before
    done = p.run_montero("restore", "postgres", manifest["id"], "--yes", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert _checksums(t) == before
    safety = backups / json.loads(done.stdout)["safety_backup"]
    assert json.loads((safety / "postgres.json").read_text())["tables"]["clients"] == 1
    status, body = p.wait_http("/health", timeout=120)
    assert status == 200 and json.loads(body)["database"]["backend"] == "postgresql", body

    # A damaged dump is refused before anything changes.
    dump = folder / "postgres.dump"
    dump.write_bytes(dump.read_bytes()[:-100])
    done = p.run_montero("restore", "postgres", manifest["id"], "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "truncated" in done.stderr or "damaged" in done.stderr, done.stderr
    assert _checksums(t) == before
