"""Issue 14's proof on a real engine: `montero deploy`, `rollback` and `releases` on one host,
production profile (nginx, HTTPS), 3 app replicas, while an independent load loop sends reads,
writes and logins through nginx over one keep-alive connection (as browsers and API clients do)
and counts every response.

Ordered steps on one stack (module fixture), each a release built from the project copy's
backend/ changed by the test:
  d) a migration that fails on the backup copy: exit 1 with alembic's error, nothing touched;
  c) a release that exits at import: rolled back, exit 1, the bundle names the cause, 0 failed;
  a+b) a code change with an additive migration: 0 failed, old replicas answered during the
     switch on the migrated schema, every replica serves the new code, the receipt agrees;
  f) `rollback --with-data`: the pre-migration rows and schema are back;
  e) a second deploy, then a plain `rollback`: 0 failed; pruning (MONTERO_KEEP_RELEASES=3);
  `releases` lists it all with the receipts;
  and a migration that drops a column: refused (exit 2), then `--allow-breaking`'s announced window.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import json
import secrets
import sqlite3
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

# ~8 minutes of builds and rolling deploys: scripts/test.sh runs it in its second pytest process.
pytestmark = pytest.mark.lane2

ADMIN = {"email": "admin@example.com", "password": "Releases-Admin-pass-123"}
LOAD_BOUND_S = 900  # a bound, never an assertion on timing
MIN_REQUESTS = 200

MIGRATION_0002 = '''"""client note (additive: a nullable column, the running release ignores it)"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e2e_note"
down_revision = "@HEAD@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(sa.Column("note", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("note")
'''

BROKEN_MIGRATION = '''"""a migration that fails (montero e2e)"""
revision = "e2e_broken"
down_revision = "@HEAD@"
branch_labels = None
depends_on = None


def upgrade() -> None:
    raise RuntimeError("broken migration (montero e2e)")


def downgrade() -> None:
    pass
'''

RELEASE_HEADER = '''

@app.after_request
def _release_header(response):  # type: ignore[no-untyped-def]
    response.headers["X-Release"] = "v2"
    return response
'''


def _ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def _shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-2000:]}\n--- stderr\n{done.stderr[-4000:]}"


def _docker(*args: str) -> str:
    return _ok(subprocess.run(["docker", *args], capture_output=True, text=True, check=False, timeout=600),
               "docker " + args[0])


@dataclass
class Release:
    """The project copy's backend/ as the test changes it, and a way back to the original."""

    root: Path
    original: dict[str, str] = field(default_factory=dict)

    def head(self) -> str:
        """The backend's current alembic head (the revision no other one names as its parent)."""
        import re

        revisions, parents = set(), set()
        for path in (self.root / "backend" / "migrations" / "versions").glob("*.py"):
            text = path.read_text()
            revisions |= set(re.findall(r'^revision(?:: str)? = "([^"]+)"', text, re.MULTILINE))
            parents |= set(re.findall(r'^down_revision(?:: str \| None)? = "([^"]+)"', text, re.MULTILINE))
        (head,) = revisions - parents
        return head

    def migration(self, name: str, template: str) -> None:
        self.write(f"migrations/versions/{name}.py", template.replace("@HEAD@", self.head()))

    def write(self, relative: str, text: str) -> None:
        path = self.root / "backend" / relative
        if relative not in self.original:
            self.original[relative] = path.read_text() if path.exists() else ""
        path.write_text(text)

    def append(self, relative: str, text: str) -> None:
        path = self.root / "backend" / relative
        self.write(relative, path.read_text() + text)

    def reset(self) -> None:
        for relative, text in self.original.items():
            path = self.root / "backend" / relative
            if text:
                path.write_text(text)
            else:
                path.unlink(missing_ok=True)
        self.original.clear()


@pytest.fixture(scope="module")
def stack(module_stack_project: Any) -> Any:
    p = module_stack_project
    p.write_env(SECRET_KEY=secrets.token_hex(32), DEFAULT_RATE_LIMIT="100000 per minute",
                LOGIN_LIMIT_ACCOUNT="1000 per minute", LOGIN_LIMIT_ADDRESS="1000 per minute",
                MONTERO_KEEP_RELEASES="3")
    image = p.env["MONTERO_APP_IMAGE"]
    original = _docker("image", "inspect", "--format", "{{.Id}}", image).strip()
    _ok(p.run_montero("tls", "self-signed", "--domain", "localhost"), "tls self-signed")
    _ok(p.run_montero("up", "--profile", "production", "--scale", "app=3", timeout=600), "up --profile production")
    p.compose_files.append(p.root / "docker" / "compose.production.yml")
    p.profiles.append("production")
    _ok(p.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email", ADMIN["email"],
                  "--password", ADMIN["password"], "--name", "Admin"), "create-admin")
    p.release = Release(p.root)
    try:
        yield p
    finally:
        # The session's app image tag goes back to what it was; every release image goes.
        subprocess.run(["docker", "tag", original, image], capture_output=True, check=False)
        path = p.root / ".montero" / "releases.json"
        if path.is_file():
            tags = {r["image"] for r in json.loads(path.read_text())["releases"]}
            for tag in sorted(tags - {image}):
                subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)


# ------------------------------------------------------------------ the independent load loop


def _context(p: Any) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(p.root / "docker" / "certs" / "fullchain.pem"))


@dataclass
class KeepAliveLoad:
    """One persistent HTTPS connection through nginx: authenticated reads, a write every 10th
    request, a login every 50th. Every response is counted. A request that fails on a reused
    connection before any byte of the answer (the server closed it while idle) is what every
    HTTP client retries on a fresh connection: counted in `keepalive_closed`, retried once; any
    other error, or a wrong status, is a failure."""

    p: Any
    token: str = ""
    count: int = 0
    failures: list[tuple[int, Any, str]] = field(default_factory=list)
    keepalive_closed: int = 0
    releases: collections.Counter[str] = field(default_factory=collections.Counter)
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    latencies_ms: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    conn: http.client.HTTPSConnection | None = None
    last_old: float | None = None  # monotonic time of the last answer without the new release's header
    first_new: float | None = None  # ... and of the first one with it

    def _send(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        if self.conn is None:
            self.conn = http.client.HTTPSConnection("localhost", self.p.https_port, timeout=30,
                                                    context=_context(self.p))
        headers = {"Content-Type": "application/json", "User-Agent": "montero-e2e-load"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        self.conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = self.conn.getresponse()
        data = response.read()
        found = {k.lower(): v for k, v in response.getheaders()}
        if found.get("connection", "").lower() == "close":
            self._drop()
        return response.status, found, data

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], bytes]:
        reused = self.conn is not None and self.conn.sock is not None
        try:
            return self._send(method, path, body)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._drop()
            if not reused:
                raise
            self.keepalive_closed += 1
            return self._send(method, path, body)

    def one(self, i: int) -> None:
        if i % 50 == 25 or not self.token:
            status, headers, body = self.request("POST", "/api/auth/login", ADMIN)
            expect = 200
            if status == 200:
                self.token = json.loads(body)["token"]
        elif i % 10 == 5:  # a write: nginx never replays a POST it has sent
            status, headers, body = self.request("POST", "/api/clients",
                                                 {"name": f"Load {i}", "nit": f"{time.time_ns()}"})
            expect = 201
        else:
            status, headers, body = self.request("GET", "/api/auth/me")
            expect = 200
        self.releases[headers.get("x-release", "old")] += 1
        if "x-release" not in headers:
            self.last_old = time.monotonic()
        elif self.first_new is None:
            self.first_new = time.monotonic()
        self.served[headers.get("x-served-by", "?").split(",")[-1].strip()] += 1
        if status != expect:
            self.failures.append((i, status, body[:200].decode(errors="replace")))

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_BOUND_S
        while (self.count < MIN_REQUESTS or not self.stop.is_set()) and time.monotonic() < deadline:
            started = time.monotonic()
            try:
                self.one(self.count)
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                self.failures.append((self.count, "connection", f"{type(exc).__name__}: {exc}"))
            self.latencies_ms.append((time.monotonic() - started) * 1000)
            self.count += 1
        self._drop()

    def during(self, action: Any) -> Any:
        """Run `action` while the load runs; the load goes on until both are done."""
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            return action()
        finally:
            self.stop.set()
            thread.join(LOAD_BOUND_S + 60)


def _app_evidence(p: Any) -> str:
    """The app containers' health logs and last log lines, for a failure message."""
    ids = _ok(p.compose("ps", "-a", "-q", "app"), "compose ps").split()
    found = subprocess.run(["docker", "inspect", "--format", "{{.Name}} {{.State.Status}} {{json .State.Health}}",
                            *ids], capture_output=True, text=True, check=False).stdout
    return f"\n--- app containers\n{found[-3000:]}\n--- app logs\n{p.logs('app', tail=40)[-4000:]}"


def timed(p: Any, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = p.run_montero(*args, timeout=1200)
    return done, time.monotonic() - started


def app_ids(p: Any) -> set[str]:
    return set(_ok(p.compose("ps", "-q", "app"), "compose ps").split())


def history(p: Any) -> dict[str, Any]:
    return json.loads(_ok(p.run_montero("releases", "--json"), "releases --json"))


def db(p: Any) -> Path:
    return p.root / "data" / "mi_sistema.db"


def query(p: Any, sql: str) -> list[tuple[Any, ...]]:
    # Closed at once: a restore (rightly) refuses to swap a database file another process holds open.
    with contextlib.closing(sqlite3.connect(f"file:{db(p)}?mode=ro", uri=True)) as con:
        return con.execute(sql).fetchall()


def columns(p: Any, table: str) -> list[str]:
    return [row[1] for row in query(p, f"PRAGMA table_info({table})")]


def add_client(p: Any, name: str) -> None:
    load = KeepAliveLoad(p)
    load.one(0)  # logs in
    status, _, body = load.request("POST", "/api/clients", {"name": name, "nit": f"{time.time_ns()}"})
    load._drop()
    assert status == 201, body


# ------------------------------------------------------------------ the steps


def test_a_migration_that_fails_on_the_copy_touches_nothing(stack: Any) -> None:
    """(d) Before any replica changes, the new release's migrations run on a copy of a verified backup."""
    before_ids, before_image = app_ids(stack), _docker("image", "inspect", "--format", "{{.Id}}",
                                                       stack.env["MONTERO_APP_IMAGE"]).strip()
    head = stack.release.head()
    stack.release.migration("e2e_broken", BROKEN_MIGRATION)
    try:
        done = stack.run_montero("deploy", "--yes", timeout=1200)
    finally:
        stack.release.reset()
    assert done.returncode == 1, _shown(done)
    assert "the new release's migrations failed on a copy of the database" in done.stderr, done.stderr
    assert "RuntimeError: broken migration (montero e2e)" in done.stderr
    assert "nothing running was touched" in done.stderr
    assert app_ids(stack) == before_ids
    assert _docker("image", "inspect", "--format", "{{.Id}}", stack.env["MONTERO_APP_IMAGE"]).strip() == before_image
    assert query(stack, "SELECT version_num FROM alembic_version") == [(head,)]
    assert "note" not in columns(stack, "clients")
    h = history(stack)
    failed = h["releases"][0]
    assert failed["outcome"] == "failed" and "broken migration" in failed["reason"]
    assert failed["receipt"]["backup"] and (stack.root / "backups" / failed["receipt"]["backup"]).is_dir()
    assert h["current"] == h["releases"][1]["id"] and h["releases"][1]["kind"] == "adopted"


def test_a_release_that_fails_its_health_check_is_rolled_back_under_load(stack: Any) -> None:
    """(c) No old replica stops without a healthy replacement; exit 1; the bundle names the cause; 0 failed."""
    before = app_ids(stack)
    stack.release.append("wsgi.py", '\nraise RuntimeError("broken release (montero e2e)")\n')
    load = KeepAliveLoad(stack)
    try:
        done, _ = load.during(lambda: timed(stack, "deploy", "--yes", "--timeout", "120"))
    finally:
        stack.release.reset()
    assert done.returncode == 1, _shown(done)
    assert "failed and was rolled back to adopted-" in done.stderr, done.stderr
    assert "broken release (montero e2e)" in done.stderr  # the failing replica's own last log lines
    assert "the database schema did not change" in done.stderr
    assert load.failures == [], load.failures[:10]
    assert load.count >= MIN_REQUESTS
    assert app_ids(stack) == before  # the old replicas never stopped
    record = history(stack)["releases"][0]
    assert record["outcome"] == "rolled-back"
    assert any("broken release (montero e2e)" in line for line in record["failure"]["logs"])
    assert record["failure"]["replica"] and record["failure"]["returned_to"].startswith("adopted-")
    assert record["receipt"]["probes_failed"] == 0


def test_deploy_of_a_code_change_with_an_additive_migration_drops_nothing(stack: Any) -> None:
    """(a) + (b): 0 failed; old replicas kept answering on the migrated schema during the switch;
    the new code on every replica afterwards; the receipt agrees with the load loop."""
    add_client(stack, "written before the deploy")
    head = stack.release.head()
    stack.release.migration("e2e_client_note", MIGRATION_0002)
    stack.release.append("wsgi.py", RELEASE_HEADER)
    before = app_ids(stack)
    load = KeepAliveLoad(stack)
    migrated_at: list[float] = []

    def deploy() -> tuple[subprocess.CompletedProcess[str], float]:
        done, seconds = timed(stack, "deploy", "--yes", "--json")
        migrated_at.append(time.monotonic())
        return done, seconds

    done, seconds = load.during(deploy)
    assert done.returncode == 0, _shown(done)
    out = json.loads(done.stdout)
    receipt = out["release"]["receipt"]
    assert load.failures == [], load.failures[:10]
    assert load.releases["old"] > 0 and load.releases["v2"] > 0, load.releases
    assert query(stack, "SELECT version_num FROM alembic_version") == [("e2e_note",)]
    assert "note" in columns(stack, "clients")
    # The migration ran once, before the switch; an old replica answered after a new one had:
    # the old release kept working on the migrated schema during the switch.
    assert done.stderr.count("migrating the database once, before the switch") == 1
    assert done.stderr.index("migrating the database once") < done.stderr.index("[1/3] starting a replacement")
    assert load.first_new is not None and load.last_old is not None and load.last_old > load.first_new
    # Every replica was replaced and serves v2.
    after = app_ids(stack)
    assert len(after) == 3 and not (before & after)
    check = KeepAliveLoad(stack)
    check.stop.set()
    check.run()
    assert check.failures == [] and set(check.releases) == {"v2"}, check.releases
    assert len([a for a in check.served if a.endswith(":5000")]) == 3, check.served
    # The receipt's numbers agree with what the load loop saw.
    assert receipt["replicas_replaced"] == 3
    assert receipt["probes_failed"] == 0 and receipt["probes_sent"] > 20
    assert 0 < receipt["duration_s"] <= seconds + 1
    assert receipt["p50_ms"] <= receipt["p99_ms"]
    assert receipt["revision_before"] == head and receipt["revision_after"] == "e2e_note"
    assert (stack.root / "backups" / receipt["backup"]).is_dir()
    print(done.stderr)
    print(f"\ndeploy: {seconds:.1f}s, receipt {receipt}, load {load.count} requests, "
          f"{len(load.failures)} failed, {load.keepalive_closed} keep-alive closes retried")


def test_rollback_with_data_gets_the_pre_migration_rows_back(stack: Any) -> None:
    """(f) The old release, and the database as the pre-deploy backup had it."""
    add_client(stack, "written after the deploy")
    h = history(stack)
    current = h["releases"][0]
    head = current["receipt"]["revision_before"]
    assert current["id"] == h["current"] and head and current["receipt"]["revision_after"] == "e2e_note"
    refused = stack.run_montero("rollback", "--with-data")
    assert refused.returncode == 2 and "every change written since" in refused.stderr, refused.stderr
    done = stack.run_montero("rollback", "--with-data", "--yes", timeout=1200)
    assert done.returncode == 0, _shown(done) + _app_evidence(stack)
    names = {row[0] for row in query(stack, "SELECT name FROM clients")}
    assert "written before the deploy" in names and "written after the deploy" not in names
    assert query(stack, "SELECT version_num FROM alembic_version") == [(head,)]
    assert "note" not in columns(stack, "clients")
    check = KeepAliveLoad(stack)
    check.stop.set()
    check.run()
    assert check.failures == [] and set(check.releases) == {"old"}, check.releases
    assert history(stack)["current"].startswith("adopted-")


def test_deploy_again_then_rollback_drop_nothing(stack: Any) -> None:
    """(e) A plain rollback uses the same zero-downtime switch: 0 failed. Pruning keeps 3 built releases."""
    done = stack.run_montero("deploy", "--yes", timeout=1200)  # the same v2 change, still in backend/
    assert done.returncode == 0, _shown(done)
    said = " ".join(done.stderr.split())  # Rich wraps long lines on stderr
    assert "image" in said and "removed (MONTERO_KEEP_RELEASES=3)" in said, done.stderr
    load = KeepAliveLoad(stack)
    back, seconds = load.during(lambda: timed(stack, "rollback", "--yes", "--json"))
    assert back.returncode == 0, _shown(back)
    receipt = json.loads(back.stdout)["release"]["receipt"]
    assert load.failures == [], load.failures[:10]
    assert load.releases["v2"] > 0 and load.releases["old"] > 0
    assert receipt["replicas_replaced"] == 3 and receipt["probes_failed"] == 0
    # The schema stays where the newer release put it: the old release starts on it.
    assert query(stack, "SELECT version_num FROM alembic_version") == [("e2e_note",)]
    check = KeepAliveLoad(stack)
    check.stop.set()
    check.run()
    assert check.failures == [] and set(check.releases) == {"old"}, check.releases
    print(f"\nrollback: {seconds:.1f}s, receipt {receipt}, load {load.count} requests, "
          f"{len(load.failures)} failed, {load.keepalive_closed} keep-alive closes retried")


def test_releases_lists_the_history_with_receipts(stack: Any) -> None:
    stack.release.reset()
    h = history(stack)
    kinds = [(r["kind"], r["outcome"]) for r in h["releases"]]
    assert kinds[0] == ("rollback", "ok") and ("deploy", "rolled-back") in kinds and ("deploy", "failed") in kinds
    pruned = [r for r in h["releases"] if r["pruned"]]
    assert [r["outcome"] for r in pruned] == ["failed"]  # the oldest built one beyond 3
    assert subprocess.run(["docker", "image", "inspect", pruned[0]["image"]], capture_output=True,
                          check=False).returncode != 0
    table = _ok(stack.run_montero("releases", env={"COLUMNS": "250"}), "releases")  # no wrapped cells
    assert "*" in table and "probes" in table and "replica(s) replaced" in table


DROP_NOTE_MIGRATION = '''"""drop the client note (destructive: the running release still selects the column)"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "e2e_drop_note"
down_revision = "e2e_note"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.drop_column("note")


def downgrade() -> None:
    with op.batch_alter_table("clients") as batch_op:
        batch_op.add_column(sa.Column("note", sa.String(length=200), nullable=True))
'''


def test_a_destructive_migration_is_refused_then_allow_breaking_takes_an_announced_window(stack: Any) -> None:
    """Point 2: a migration that drops a column the running release has is refused before any replica
    changes (exit 2, the column named, the expand/contract advice); with --allow-breaking the deploy
    announces a maintenance window, migrates once and ends with every replica on the new release."""
    stack.release.reset()
    # The live schema is at e2e_note (the plain rollback kept it): the chain must know that revision.
    stack.release.migration("e2e_client_note", MIGRATION_0002)
    stack.release.write("migrations/versions/e2e_drop_note.py", DROP_NOTE_MIGRATION)
    stack.release.append("wsgi.py", RELEASE_HEADER.replace('"v2"', '"v3"'))
    try:
        before = app_ids(stack)
        refused = stack.run_montero("deploy", "--yes", timeout=1200)
        assert refused.returncode == 2, _shown(refused)
        said = " ".join(refused.stderr.split())
        assert "would break the running release during the switch" in said, refused.stderr
        assert "column clients.note is dropped (or renamed)" in said
        assert "--allow-breaking" in said and "expand now, contract in a later release" in said
        assert app_ids(stack) == before  # no replica changed
        assert "note" in columns(stack, "clients")
        assert query(stack, "SELECT version_num FROM alembic_version") == [("e2e_note",)]
        assert history(stack)["releases"][0]["outcome"] == "failed"

        done = stack.run_montero("deploy", "--yes", "--allow-breaking", "--json", timeout=1200)
        assert done.returncode == 0, _shown(done) + _app_evidence(stack)
        assert "MAINTENANCE WINDOW: stopping all 3 app replica(s) for a breaking migration" in done.stderr
        assert "maintenance window over after" in done.stderr
        assert query(stack, "SELECT version_num FROM alembic_version") == [("e2e_drop_note",)]
        assert "note" not in columns(stack, "clients")
        out = json.loads(done.stdout)
        assert out["release"]["outcome"] == "ok" and out["release"]["id"] == history(stack)["current"]
        assert any("maintenance window replaced every replica" in n for n in out["notes"]), out
        check = KeepAliveLoad(stack)
        check.stop.set()
        check.run()
        assert check.failures == [] and set(check.releases) == {"v3"}, check.releases
        assert len(app_ids(stack)) == 3
    finally:
        stack.release.reset()
