"""Fixtures for the backend suite: a real redis-server, real SQLite files built by `alembic upgrade head`,
real gunicorn processes. Nothing here fakes the database or Redis."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from api_helpers import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    SECRET,
    Gunicorn,
    create_admin,
    free_port,
    login,
    run_alembic,
    wait_for,
)
from flask import Flask
from flask.testing import FlaskClient
from montero_api import create_app

# Settings a developer's shell might export; the suite must not pick them up by accident.
_ENV_NAMES = (
    "SECRET_KEY",
    "FLASK_ENV",
    "DATABASE_URL",
    "RATELIMIT_STORAGE_URL",
    "LOG_DIR",
    "MAIL_SERVER",
    "MAIL_PORT",
    "MAIL_USE_TLS",
    "MAIL_USERNAME",
    "MAIL_PASSWORD",
    "REGISTRATION_OPEN",
    "GUNICORN_WORKERS",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (apt-get install redis-server); the backend suite needs it")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    wait_for(lambda: bool(client.ping()), what="redis-server")
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback with a migrated template database; yields its base URL."""
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
        base_url = f"postgresql://montero@127.0.0.1:{port}"
        _pg_execute(base_url, "CREATE DATABASE montero_template")
        run_alembic(f"{base_url}/montero_template", "upgrade", "head")
        yield base_url
    finally:
        subprocess.run(
            [*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
            timeout=60,
            check=False,
        )
        shutil.rmtree(base, ignore_errors=True)


def _pg_execute(base_url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{base_url}/montero", autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


_pg_databases = itertools.count()


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for one test (a copy of the template, made in milliseconds)."""
    name = f"montero_test_{next(_pg_databases)}"
    _pg_execute(postgres_server, f"CREATE DATABASE {name} TEMPLATE montero_template")
    yield f"{postgres_server}/{name}"
    _pg_execute(postgres_server, f"DROP DATABASE {name} WITH (FORCE)")


@pytest.fixture(autouse=False)
def flush_redis(redis_url: str) -> None:
    import redis

    redis.Redis.from_url(redis_url).flushall()


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "mi_sistema.db"
    run_alembic(f"sqlite:///{path}", "upgrade", "head")
    return path


@pytest.fixture
def db_path(template_db: Path, tmp_path: Path) -> Path:
    path = tmp_path / "data" / "mi_sistema.db"
    path.parent.mkdir()
    shutil.copy(template_db, path)
    return path


@pytest.fixture
def base_settings(db_path: Path, tmp_path: Path, redis_url: str, flush_redis: None) -> dict[str, Any]:
    return {
        "FLASK_ENV": "production",
        "SECRET_KEY": SECRET,
        "DATABASE_URL": f"sqlite:///{db_path}",
        "RATELIMIT_STORAGE_URL": redis_url,
        "LOG_DIR": str(tmp_path / "logs"),
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": "1",
        "MAIL_USE_TLS": "false",
        "LOG_LEVEL": "WARNING",
    }


class ServerLikeClient(FlaskClient):
    """Flask's client, but each response is read and closed before it is returned, as a WSGI server does: work
    the app defers until the answer is out (response.call_on_close, the mail queue's wake-up) then happens."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("buffered", True)
        return super().open(*args, **kwargs)


@pytest.fixture
def make_app(base_settings: dict[str, Any]) -> Iterator[Callable[..., Flask]]:
    apps: list[Flask] = []

    def factory(**overrides: Any) -> Flask:
        app = create_app({**base_settings, **overrides})
        app.config["TESTING"] = True
        app.test_client_class = ServerLikeClient
        apps.append(app)
        return app

    yield factory
    # Each app's mail-queue thread must not outlive its test (and its temporary database).
    for app in apps:
        app.extensions["montero_mail_queue"].stop()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def admin_headers(app: Flask, client: FlaskClient) -> dict[str, str]:
    create_admin(app)
    return login(client, ADMIN_EMAIL, ADMIN_PASSWORD)


@pytest.fixture
def staff_headers(client: FlaskClient, admin_headers: dict[str, str]) -> dict[str, str]:
    body = {"email": "staff@montero.test", "password": "staff-password-1", "full_name": "Ana Staff"}
    assert client.post("/api/auth/register", json=body, headers=admin_headers).status_code == 201
    return login(client, "staff@montero.test", "staff-password-1")


@pytest.fixture
def gunicorn(base_settings: dict[str, Any], tmp_path: Path) -> Iterator[Callable[..., Gunicorn]]:
    started: list[Gunicorn] = []

    def start(workers: int = 1, **env: str) -> Gunicorn:
        server = Gunicorn(
            {**{k: str(v) for k, v in base_settings.items()}, **env}, workers, tmp_path / f"gunicorn-{len(started)}.log"
        )
        started.append(server)
        server.wait_healthy()
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A redis-server of the test's own on a free loopback port (stopped/killed by the tests that need to)."""
    port = free_port()
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: bool(redis.Redis(port=port).ping()), what="redis-server")
    yield proc, f"redis://127.0.0.1:{port}/0"
    proc.send_signal(signal.SIGCONT)
    proc.kill()
    proc.wait(timeout=10)
