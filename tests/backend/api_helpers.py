"""Helpers shared by the backend tests (imported by name; pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import requests
from flask import Flask
from flask.testing import FlaskClient

BACKEND = Path(__file__).resolve().parents[2] / "backend"
if str(BACKEND) not in sys.path:
    sys.path.insert(0, str(BACKEND))

ADMIN_EMAIL = "admin@montero.test"
ADMIN_PASSWORD = "admin-password-1"
SECRET = secrets.token_hex(32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001, S110 - not up yet
            pass
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {what}")


def run_alembic(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Alembic the way the container runs it: the CLI, from the backend directory, DATABASE_URL in the env."""
    env = {**os.environ, "DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args],
        cwd=BACKEND,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def row_counts(path: Path) -> dict[str, int]:
    tables = ("users", "auth_sessions", "password_reset_tokens", "clients", "affiliations", "audit_log", "mail_jobs")
    with sqlite3.connect(path) as conn:
        return {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}


def wait_queue_empty(path: Path, timeout: float = 20.0) -> None:
    """Until the mail queue (table mail_jobs) has sent or dropped every job."""
    wait_for(lambda: row_counts(path)["mail_jobs"] == 0, timeout=timeout, what="the mail queue to empty")


def create_admin(app: Flask, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> None:
    result = app.test_cli_runner().invoke(args=["create-admin", "--email", email, "--password", password])
    assert result.exit_code == 0, result.output


def login(client: FlaskClient, email: str, password: str) -> dict[str, str]:
    response = client.post("/api/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


class Gunicorn:
    """A real gunicorn master serving backend/wsgi.py on a free port."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "gunicorn.conf.py",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(workers),
                "wsgi:app",
            ],
            cwd=BACKEND,
            env={**os.environ, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop() can end master and workers together
        )

    def wait_healthy(self) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            return requests.get(self.url + "/health", timeout=2).status_code == 200

        wait_for(up, timeout=30, what=f"gunicorn on {self.url}")

    def stop(self) -> str:
        # SIGINT is gunicorn's quick shutdown; whatever is still alive shortly after goes with its group.
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()
        return self.log_path.read_text()
