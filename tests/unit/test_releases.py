"""Releases on one host (issue 14): ids and tags, the history file, pruning, the migration gate's
schema comparison on real SQLite files, the probe stream against a real local HTTP server, and
the CLI's refusals (nothing is built or touched)."""

from __future__ import annotations

import http.server
import json
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import Result

from montero_ops.errors import UsageError
from montero_ops.project import Project
from montero_ops.services import release_deploy as rd
from montero_ops.services import releases as rel
from montero_ops.services.probe import ProbeStream, ProbeTarget

WHEN = datetime(2026, 12, 2, 16, 30, 5, tzinfo=UTC)


def make(release_id: str, kind: str = "deploy", outcome: str = "ok", image: str | None = None) -> rel.Release:
    return rel.Release(id=release_id, image=image or f"shop-app:{release_id}", digest=f"sha256:{release_id}",
                       commit=None, created_at="2026-12-02T16:30:05Z", by="me@host", kind=kind, outcome=outcome)


# ------------------------------------------------------------------ names


def test_release_ids_are_sortable_unique_valid_tags() -> None:
    assert rel.new_release_id("3f2a9c1d7b20", WHEN, set()) == "3f2a9c1d7b20-20261202T163005"
    assert rel.new_release_id(None, WHEN, set()) == "r-20261202T163005"
    assert rel.new_release_id(None, WHEN, {"r-20261202T163005"}) == "r-20261202T163005-2"


def test_the_release_tag_reuses_the_configured_repository() -> None:
    assert rel.release_tag("shop-app:latest", "r-1") == "shop-app:r-1"
    assert rel.release_tag("registry:5000/team/shop-app:latest", "r-1") == "registry:5000/team/shop-app:r-1"
    assert rel.release_tag("registry:5000/shop-app", "r-1") == "registry:5000/shop-app:r-1"


def test_the_configured_image_follows_the_project_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONTERO_APP_IMAGE", raising=False)
    project = Project(tmp_path, "shop", tmp_path / ".env", (tmp_path / "docker" / "compose.yml",))
    assert rel.configured_image(project) == "shop-app:latest"
    (tmp_path / ".env").write_text("MONTERO_APP_IMAGE=team/app:stable\n")
    assert rel.configured_image(project) == "team/app:stable"


@pytest.mark.parametrize("raw", ["1", "0", "five", "-3"])
def test_keep_releases_must_keep_the_current_and_one_to_go_back_to(monkeypatch: pytest.MonkeyPatch,
                                                                   raw: str) -> None:
    monkeypatch.setenv("MONTERO_KEEP_RELEASES", raw)
    with pytest.raises(UsageError, match=f"MONTERO_KEEP_RELEASES={raw} is not a whole number of at least 2"):
        rel.keep_count()


def test_keep_releases_defaults_to_five(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONTERO_KEEP_RELEASES", raising=False)
    assert rel.keep_count() == 5
    monkeypatch.setenv("MONTERO_KEEP_RELEASES", "3")
    assert rel.keep_count() == 3


# ------------------------------------------------------------------ history


def test_history_round_trips_with_receipts_and_bundles(tmp_path: Path) -> None:
    project = Project(tmp_path, "shop", tmp_path / ".env", (tmp_path / "docker" / "compose.yml",))
    history = rel.load_history(project)
    assert history.releases == [] and history.path == tmp_path / ".montero" / "releases.json"
    first = make("a", kind="adopted")
    second = make("b", outcome="rolled-back")
    second.receipt = rel.Receipt(duration_s=41.2, replicas_replaced=3, probes_sent=300, probes_failed=0,
                                 p50_ms=3.1, p99_ms=12.0, backup="shop-20261202-163005-pre-deploy")
    second.failure = {"reason": "the new replica is unhealthy", "logs": ["RuntimeError: boom"]}
    history.releases += [first, second]
    history.current = "a"
    rel.save_history(history)
    again = rel.load_history(project)
    assert again.current == "a"
    assert again.releases == [first, second]
    assert isinstance(again.releases[1].receipt, rel.Receipt)
    assert not list((tmp_path / ".montero").glob("*.tmp"))  # written through a rename


def test_an_unreadable_history_is_one_clear_error(tmp_path: Path) -> None:
    project = Project(tmp_path, "shop", tmp_path / ".env", (tmp_path / "docker" / "compose.yml",))
    (tmp_path / ".montero").mkdir()
    (tmp_path / ".montero" / "releases.json").write_text("{not json")
    with pytest.raises(Exception, match="the release history .*releases.json is not readable"):
        rel.load_history(project)


def test_previous_is_the_newest_other_good_built_release(tmp_path: Path) -> None:
    history = rel.History(tmp_path / "h.json", current="c",
                          releases=[make("a", kind="adopted"), make("b"), make("x", outcome="failed"),
                                    make("r", kind="rollback"), make("c")])
    assert getattr(history.previous(), "id", None) == "b"
    history.releases[1].pruned = True
    assert getattr(history.previous(), "id", None) == "a"


def test_prune_keeps_the_newest_the_current_and_the_rollback_target(tmp_path: Path) -> None:
    releases = [make(f"r{i}") for i in range(1, 8)]
    # `rollback r2` made an old release current again: it stays whatever its age, and so does the
    # release a rollback would use now (r6, the newest good other one; r7 was rolled back).
    releases[-1].outcome = "rolled-back"
    history = rel.History(tmp_path / "h.json", current="r2", releases=releases)
    assert getattr(history.previous(), "id", None) == "r6"
    assert [r.id for r in rel.prune_plan(history, 3)] == ["r4", "r3", "r1"]
    releases[0].pruned = True  # already gone: not planned again
    assert [r.id for r in rel.prune_plan(history, 3)] == ["r4", "r3"]


def test_prune_never_removes_a_rollback_record_or_an_image_a_kept_release_runs(tmp_path: Path) -> None:
    # r0 was adopted with the image r3 runs again (a rollback to it, then a re-tag): r0 is old, its image is not.
    history = rel.History(tmp_path / "h.json", current="r3",
                          releases=[make("r0", kind="adopted", image="shop-app:same"), make("r1"),
                                    make("back", kind="rollback", image="shop-app:r1"), make("r2"),
                                    make("r3", image="shop-app:same")])
    assert [r.id for r in rel.prune_plan(history, 2)] == ["r1"]


# ------------------------------------------------------------------ migration gate: what the old release would miss


def sqlite_file(path: Path, *statements: str) -> Path:
    with sqlite3.connect(path) as con:
        for statement in statements:
            con.execute(statement)
    return path


def test_an_added_column_or_table_is_not_destructive(tmp_path: Path) -> None:
    before = rd.schema(sqlite_file(tmp_path / "a.db", "CREATE TABLE clients (id INTEGER, name TEXT)"))
    after = rd.schema(sqlite_file(tmp_path / "b.db", "CREATE TABLE clients (id INTEGER, name TEXT, note TEXT)",
                                  "CREATE TABLE tags (id INTEGER)"))
    assert rd.destructive_changes(before, after) == []


def test_a_dropped_or_renamed_column_and_a_dropped_table_are_destructive(tmp_path: Path) -> None:
    before = rd.schema(sqlite_file(tmp_path / "a.db", "CREATE TABLE clients (id INTEGER, name TEXT, city TEXT)",
                                   "CREATE TABLE old (id INTEGER)", "CREATE TABLE alembic_version (v TEXT)"))
    after = rd.schema(sqlite_file(tmp_path / "b.db", "CREATE TABLE clients (id INTEGER, full_name TEXT, city TEXT)"))
    assert rd.destructive_changes(before, after) == [
        "column clients.name is dropped (or renamed)",
        "table old is dropped (or renamed)",
    ]


def test_the_revision_is_read_from_the_file_without_writing(tmp_path: Path) -> None:
    db = sqlite_file(tmp_path / "m.db", "CREATE TABLE alembic_version (version_num TEXT)",
                     "INSERT INTO alembic_version VALUES ('0002')")
    assert rd.sqlite_revision(db) == "0002"
    assert rd.sqlite_revision(tmp_path / "none.db") is None
    assert rd.sqlite_revision(sqlite_file(tmp_path / "empty.db", "CREATE TABLE t (x)")) is None


# ------------------------------------------------------------------ the probe stream, against a real server


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nginx answers
    plan: ClassVar[list[int]] = []

    def do_GET(self) -> None:
        status = self.plan.pop(0) if self.plan else (200 if self.path == "/health" else 401)
        body = b"{}"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[tuple[int, Callable[[list[int]], None]]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()

    def plan(statuses: list[int]) -> None:
        Handler.plan = list(statuses)

    plan([])
    try:
        yield httpd.server_address[1], plan
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_probe_counts_health_and_the_auth_layer_as_success(server: tuple[int, Any]) -> None:
    port, _ = server
    probe = ProbeStream(ProbeTarget("127.0.0.1", port, False))
    for path in ("/health", "/api/auth/me", "/health", "/api/auth/me"):
        probe.one(path)
    assert (probe.sent, probe.failed, probe.reconnects) == (4, 0, 0)
    assert probe.percentile(50) is not None and probe.percentile(99) is not None


def test_the_probe_fails_on_a_5xx_and_names_it(server: tuple[int, Any]) -> None:
    port, plan = server
    plan([200, 502])
    probe = ProbeStream(ProbeTarget("127.0.0.1", port, False))
    probe.one("/health")
    probe.one("/health")
    assert probe.failed == 1 and probe.first_error == "/health: HTTP 502"


def test_a_refused_connection_is_a_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    probe = ProbeStream(ProbeTarget("127.0.0.1", port, False))
    probe.one("/health")
    assert probe.failed == 1 and "ConnectionRefusedError" in (probe.first_error or "")


def test_an_idle_keep_alive_close_is_retried_once_and_counted_as_a_reconnect(server: tuple[int, Any]) -> None:
    """What a graceful nginx reload does to an idle keep-alive connection: the next request on it
    fails before any answer; clients retry that on a fresh connection, so does the probe."""
    port, _ = server
    probe = ProbeStream(ProbeTarget("127.0.0.1", port, False))
    probe.one("/health")
    assert probe._conn is not None and probe._conn.sock is not None
    probe._conn.sock.shutdown(socket.SHUT_RDWR)  # the peer's close, as the client sees it
    probe.one("/health")
    assert (probe.sent, probe.failed, probe.reconnects) == (2, 0, 1)


def test_the_stream_runs_in_the_background_until_stopped(server: tuple[int, Any]) -> None:
    port, _ = server
    with ProbeStream(ProbeTarget("127.0.0.1", port, False), interval=0.01) as probe:
        deadline = threading.Event()
        while probe.sent < 10 and not deadline.wait(0.01):
            pass
    sent = probe.sent
    assert sent >= 10 and probe.failed == 0
    assert probe._thread is not None and not probe._thread.is_alive()


# ------------------------------------------------------------------ the CLI refuses before touching anything


def test_releases_without_a_history(project: Path, cli: Callable[..., Result]) -> None:
    result = cli("releases")
    assert result.exit_code == 0
    assert "no releases yet: `montero deploy` records the first one" in result.output
    assert json.loads(cli("releases", "--json").stdout) == {"target": {"kind": "host", "stack": None},
                                                            "current": None, "releases": []}


def test_releases_lists_newest_first_marking_the_current(project: Path, cli: Callable[..., Result]) -> None:
    history = rel.History(project / ".montero" / "releases.json", current="a",
                          releases=[make("a", kind="adopted"), make("b", outcome="rolled-back")])
    history.releases[1].reason = "the new replica is unhealthy"
    history.releases[1].receipt = rel.Receipt(duration_s=12.5, replicas_replaced=1, probes_sent=80, probes_failed=0,
                                              p50_ms=2.5, p99_ms=9.0)
    rel.save_history(history)
    out = json.loads(cli("releases", "--json").stdout)
    assert out["current"] == "a" and [r["id"] for r in out["releases"]] == ["b", "a"]
    table = cli("releases").output
    assert "rolled-back: the new replica is unhealthy" in table
    assert "12.5s, 1 replica(s) replaced, probes 80 sent / 0 failed, p50 2.5 ms, p99 9 ms" in table


def test_deploy_of_a_stack_that_is_not_running(project: Path, engine: Any, cli: Callable[..., Result]) -> None:
    result = cli("deploy", "--yes")
    assert result.exit_code != 0
    assert "app" in result.output and "not running" in result.output
    assert not (project / ".montero").exists()


def test_rollback_without_any_release(project: Path, engine: Any, cli: Callable[..., Result],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("montero_ops.state.State.client", lambda self, project=None, check=True: None)
    monkeypatch.setattr("montero_ops.services.release_swarm.stack_exists", lambda client, stack: False)
    result = cli("rollback", "--yes")
    assert result.exit_code == 2
    assert "no release is recorded for this project" in result.output


def test_the_cause_of_a_crash_at_import_is_the_apps_error_not_gunicorns_halt() -> None:
    from montero_ops.services.stack import FailureReport

    logs = ["Traceback (most recent call last):", '  File "/app/wsgi.py", line 17, in <module>',
            "RuntimeError: broken release", "[INFO] Worker exiting (pid: 9)", "Shutting down: Master",
            "Reason: Worker failed to boot.", "During handling of the above exception, another exception occurred:",
            "    raise HaltServer(reason, self.WORKER_BOOT_ERROR)",
            "gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>"]
    assert FailureReport("app", "shop-app-4", "", logs=logs).cause == "RuntimeError: broken release"


def test_deploy_without_nginx_says_zero_downtime_needs_the_production_profile(
        project: Path, engine: Any, cli: Callable[..., Result]) -> None:
    from tests.unit.conftest import container

    engine.set(container("app"), container("redis"))
    result = cli("deploy")
    assert result.exit_code == 2
    assert "refusing to deploy with a short gap (zero-downtime needs the production profile)" in result.output
    assert not (project / ".montero").exists()  # nothing built, nothing recorded


def test_a_failed_migration_is_reported_by_its_exception_line_not_sqlalchemys_footer(tmp_path: Path) -> None:
    """CI once showed only '(Background on this error at: …)': the reason is the exception line."""
    import subprocess
    import sys

    script = ("import sqlalchemy as sa\n"
              f"e = sa.create_engine('sqlite:///{tmp_path / 'x.db'}')\n"
              "with e.connect() as c:\n"
              "    c.execute(sa.text('ALTER TABLE clients ADD COLUMN note TEXT'))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode != 0 and "(Background on this error at" in done.stderr
    assert rd.migration_error(done.stderr, done.returncode) == (
        "sqlalchemy.exc.OperationalError: (sqlite3.OperationalError) no such table: clients")
    assert rd.migration_error("", 3) == "exit 3"
    assert rd.migration_error("FAILED: Can't locate revision identified by 'x'\n", 1) == \
        "FAILED: Can't locate revision identified by 'x'"
