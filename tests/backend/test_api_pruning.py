"""Issue 12 point 7: login sessions and reset tokens that can no longer be used are pruned, live ones stay."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

from api_helpers import ADMIN_EMAIL, ADMIN_PASSWORD, create_admin, login, wait_for
from flask import Flask

OLD = "datetime('now', '-3 days')"


def _rows(db_path: Path) -> tuple[int, int]:
    with sqlite3.connect(db_path) as conn:
        sessions = conn.execute("SELECT COUNT(*) FROM auth_sessions").fetchone()[0]
        tokens = conn.execute("SELECT COUNT(*) FROM password_reset_tokens").fetchone()[0]
    return sessions, tokens


def _dead_rows(app: Flask, db_path: Path) -> dict[str, str]:
    """Five sessions (expired, revoked, both long ago; one revoked an hour ago; one live) and three reset tokens."""
    create_admin(app)
    client = app.test_client()
    live = login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    for _ in range(4):
        login(client, ADMIN_EMAIL, ADMIN_PASSWORD)
    # This app's own first pass (started by its first request) is over before any row is made old.
    wait_for(lambda: not app.extensions["montero_mail_queue"].running, what="the first pruning pass")
    with sqlite3.connect(db_path) as conn:
        ids = [row[0] for row in conn.execute("SELECT id FROM auth_sessions ORDER BY id")]
        conn.execute(f"UPDATE auth_sessions SET created_at = {OLD}, expires_at = {OLD} WHERE id = ?", (ids[1],))
        conn.execute(f"UPDATE auth_sessions SET revoked_at = {OLD} WHERE id = ?", (ids[2],))
        conn.execute(
            f"UPDATE auth_sessions SET created_at = {OLD}, expires_at = {OLD}, revoked_at = {OLD} WHERE id = ?",
            (ids[3],),
        )
        conn.execute("UPDATE auth_sessions SET revoked_at = datetime('now', '-1 hour') WHERE id = ?", (ids[4],))
        for i, (created, expires, used) in enumerate(
            [
                (OLD, OLD, "NULL"),  # expired days ago: goes
                (OLD, "datetime('now', '+1 hour')", OLD),  # used days ago: goes
                ("datetime('now')", "datetime('now', '+1 hour')", "NULL"),  # live: stays
            ]
        ):
            conn.execute(
                "INSERT INTO password_reset_tokens (token_hash, user_id, created_at, expires_at, used_at) "
                f"VALUES (?, 1, {created}, {expires}, {used})",
                (f"{i:064d}",),
            )
    return live


def test_prune_command_deletes_only_dead_rows(make_app: Callable[..., Flask], db_path: Path) -> None:
    app = make_app()
    live = _dead_rows(app, db_path)
    assert _rows(db_path) == (5, 3)
    result = app.test_cli_runner().invoke(args=["prune"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "pruned 3 sessions and 2 reset tokens"
    assert _rows(db_path) == (2, 1)  # the live session and the one revoked an hour ago; the live token
    assert app.test_client().get("/api/auth/me", headers=live).status_code == 200
    again = app.test_cli_runner().invoke(args=["prune"])
    assert again.output.strip() == "pruned 0 sessions and 0 reset tokens"


def test_the_app_prunes_by_itself(make_app: Callable[..., Flask], db_path: Path) -> None:
    setup = make_app()
    _dead_rows(setup, db_path)
    # A new process (a new app): its first request starts the hourly pruning pass, no command needed.
    app = make_app()
    assert app.test_client().get("/health").status_code == 200
    wait_for(lambda: _rows(db_path) == (2, 1), what="the pruning pass")
