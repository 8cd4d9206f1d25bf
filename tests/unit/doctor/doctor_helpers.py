"""Doctor test helpers: real project files and SQLite databases; a fake at the Engine API only."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from montero_ops.project import Project, find_project
from montero_ops.services.doctor.context import Context

STRONG_KEY = "9f2c4e7a1b3d5f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e"
EXAMPLE = "SECRET_KEY=change-me\nFLASK_ENV=production\nDATABASE_URL=sqlite:////app/data/mi_sistema.db\nMAIL_USERNAME=\nMAIL_PASSWORD=\n"
REV_A = '"""init"""\nrevision = "aaa111"\ndown_revision = None\n'
REV_B = '"""clients"""\nrevision: str = "bbb222"\ndown_revision: str | None = "aaa111"\n'


class DoctorEngine:
    """The Engine API as doctor uses it; every answer set by the test."""

    def __init__(self, project: str = "shop") -> None:
        self.project = project
        self.items: list[dict[str, Any]] = []  # inspect documents
        self.published: list[dict[str, Any]] = []  # /containers/json entries with Ports
        self.logs: dict[str, str] = {}
        self.exec_results: list[tuple[Callable[[list[str]], bool], tuple[int, str]]] = []
        self.execs: list[list[str]] = []
        self.exec_error: Exception | None = None  # e.g. the container stopped between list and exec
        self.images: dict[str, dict[str, Any]] = {}
        self.server_version = "20.10.24"
        self.root_dir = "/"
        self.df: dict[str, Any] = {"Images": [], "Containers": [], "Volumes": [], "BuildCache": []}

    def add(
        self,
        service: str,
        *,
        running: bool = True,
        health: str | None = "healthy",
        restarts: int = 0,
        restarting: bool = False,
        exit_code: int = 0,
        env: list[str] | None = None,
        user: str = "1000",
        probes: list[dict[str, Any]] | None = None,
        logs: str = "",
        project: str | None = None,
        oom: bool = False,
        image: str = "sha256:app",
    ) -> dict[str, Any]:
        n = sum(1 for c in self.items if c["Config"]["Labels"]["com.docker.compose.service"] == service) + 1
        cid = f"{service}{n}".ljust(64, "0")
        state: dict[str, Any] = {
            "Status": "running" if running else "exited",
            "Running": running,
            "Restarting": restarting,
            "ExitCode": exit_code,
            "OOMKilled": oom,
        }
        if health:
            state["Health"] = {"Status": health, "Log": probes or []}
        doc = {
            "Id": cid,
            "Name": f"/{project or self.project}-{service}-{n}",
            "State": state,
            "RestartCount": restarts,
            "Image": image,
            "Config": {
                "Env": env or [],
                "User": user,
                "Labels": {
                    "com.docker.compose.project": project or self.project,
                    "com.docker.compose.service": service,
                },
            },
        }
        self.items.append(doc)
        self.logs[cid] = logs
        return doc

    def on_exec(self, match: Callable[[list[str]], bool], code: int, out: str = "") -> None:
        self.exec_results.append((match, (code, out)))

    # -- the Engine methods doctor calls -------------------------------------------------------
    def ping(self) -> None:
        pass

    def version(self) -> dict[str, Any]:
        return {"Version": self.server_version, "ApiVersion": "1.41"}

    def info(self) -> dict[str, Any]:
        return {"DockerRootDir": self.root_dir}

    def system_df(self) -> dict[str, Any]:
        return self.df

    def containers(self, all: bool = True) -> list[dict[str, Any]]:
        return self.published

    def project_containers(self, project: str, all: bool = True) -> list[dict[str, Any]]:
        return [{"Id": c["Id"]} for c in self.items if c["Config"]["Labels"]["com.docker.compose.project"] == project]

    def inspect(self, container_id: str) -> dict[str, Any]:
        return next(c for c in self.items if c["Id"] == container_id)

    def logs_tail(self, container_id: str, lines: int = 50) -> str:
        return "\n".join(self.logs.get(container_id, "").splitlines()[-lines:])

    def exec_run(self, container_id: str, cmd: list[str], user: str | None = None) -> tuple[int, str]:
        self.execs.append(cmd)
        if self.exec_error is not None:
            raise self.exec_error
        for match, result in self.exec_results:
            if match(cmd):
                return result
        return 0, ""

    def image_inspect(self, name: str) -> dict[str, Any] | None:
        return self.images.get(name)


def write_env(root: Path, text: str, mode: int = 0o600) -> Path:
    env = root / ".env"
    env.write_text(text)
    env.chmod(mode)
    return env


def make_db(path: Path, revision: str | None = "bbb222", wal: bool = True) -> Path:
    con = sqlite3.connect(path)
    if wal:
        con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE clients (id INTEGER PRIMARY KEY, name TEXT)")
    con.executemany("INSERT INTO clients (name) VALUES (?)", [(f"client {i}",) for i in range(200)])
    if revision is not None:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)")
        con.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    con.commit()
    con.close()
    return path


def project_of(root: Path) -> Project:
    return find_project(root)


def make_ctx(
    root: Path, engine: DoctorEngine | None = None, compose: dict[str, Any] | None = None, production: bool = False
) -> Context:
    ctx = Context(project_of(root), production=production, timeout=2.0, engine=engine)  # type: ignore[arg-type]
    ctx._cache["compose_config"] = compose  # the `docker compose config` answer (None = unavailable)
    return ctx


# Ownership tests give folders to uid 0 or 1000, which only root can do (CI runs as root).
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changing file ownership needs root")
