"""ps / status / health: from the Engine API, no python-on-whales."""

from __future__ import annotations

import pytest

from tests.unit.conftest import FakeEngine, container, json_out


def test_ps_table(cli, engine: FakeEngine) -> None:
    engine.set(container("app", restarts=2), container("redis", health=None))
    result = cli("ps")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["SERVICE", "NAME", "STATE", "HEALTH", "RESTARTS", "PORTS"]
    assert lines[1].split() == ["app", "shop-app-1", "running", "healthy", "2", "0.0.0.0:5000->5000/tcp"]
    assert lines[2].split() == ["redis", "shop-redis-1", "running", "-", "0"]


def test_ps_json_and_status_alias(cli, engine: FakeEngine) -> None:
    engine.set(container("app", state="exited", health=None, exit_code=3))
    for name in ("ps", "status"):
        result = cli(name, "--json")
        assert result.exit_code == 0
        row = json_out(result)[0]
        assert row["service"] == "app" and row["state"] == "exited" and row["exit_code"] == 3
        assert row["condition"] == "exited" and row["restarts"] == 0 and row["health"] is None


def test_ps_when_nothing_runs(cli, engine: FakeEngine) -> None:
    result = cli("ps")
    assert result.exit_code == 0 and result.stdout == ""
    assert "the stack is not running" in result.stderr


def test_health_ok(cli, engine: FakeEngine) -> None:
    engine.set(container("app"), container("redis", health=None))
    result = cli("health")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["✔ app          healthy", "✔ redis        running"]


def test_health_unhealthy_and_missing_exit_1(cli, engine: FakeEngine) -> None:
    engine.set(container("app", health="unhealthy"))
    result = cli("health", "--json")
    assert result.exit_code == 1
    assert json_out(result) == {
        "ok": False,
        "services": [
            {"service": "app", "status": "unhealthy", "containers": 1, "ok": False},
            {"service": "redis", "status": "missing", "containers": 0, "ok": False},
        ],
    }


def test_health_reports_worst_replica(cli, engine: FakeEngine) -> None:
    engine.set(container("app", 1), container("app", 2, health="starting"), container("redis"))
    result = cli("health")
    assert result.exit_code == 1
    assert "✘ app          starting (2 containers)" in result.stdout


def test_health_engine_down_exit_3(cli, project, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    result = cli("health")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == (
        "Error: the Docker socket /nonexistent/docker.sock does not exist: the daemon is not running"
    )


def test_defined_services_are_cached_until_the_compose_inputs_change(
    project, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """`health` asks compose for the service list once; a changed compose file, env file,
    profile or COMPOSE_* variable asks again."""
    import os
    import subprocess

    from montero_ops.project import find_project
    from montero_ops.services import status as status_service

    calls: list[list[str]] = []
    real_popen = subprocess.Popen

    def popen(cmd, *args, **kwargs):  # a real process that prints a fixed service list
        calls.append(cmd)
        return real_popen(["printf", "app\\nredis\\n"], *args, **kwargs)

    monkeypatch.setattr(status_service.subprocess, "Popen", popen)
    proj = find_project(project)

    assert status_service.start_defined_services(proj)() == ["app", "redis"]
    assert status_service.start_defined_services(proj)() == ["app", "redis"]
    assert len(calls) == 1
    assert calls[0][-2:] == ["config", "--services"]

    compose = project / "docker" / "compose.yml"
    st = compose.stat()
    os.utime(compose, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    status_service.start_defined_services(proj)()
    assert len(calls) == 2

    status_service.start_defined_services(proj.with_profiles("production"))()
    assert len(calls) == 3

    monkeypatch.setenv("COMPOSE_PROFILES", "postgres")
    status_service.start_defined_services(proj)()
    assert len(calls) == 4

    (project / ".env").write_text("SECRET_KEY=x\n")
    status_service.start_defined_services(proj)()
    assert len(calls) == 5


def test_a_failing_compose_is_not_cached(project, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    from montero_ops.project import find_project
    from montero_ops.services import status as status_service

    calls: list[object] = []
    real_popen = subprocess.Popen

    def popen(cmd, *args, **kwargs):
        calls.append(cmd)
        return real_popen(["sh", "-c", "echo app; exit 1"], *args, **kwargs)

    monkeypatch.setattr(status_service.subprocess, "Popen", popen)
    proj = find_project(project)
    assert status_service.start_defined_services(proj)() == []
    assert status_service.start_defined_services(proj)() == []
    assert len(calls) == 2


def test_health_marks_are_coloured_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from montero_ops.output import verdict_mark

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdout", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert (verdict_mark(True), verdict_mark(False)) == ("\x1b[32m✔\x1b[0m", "\x1b[31m✘\x1b[0m")
    monkeypatch.setenv("NO_COLOR", "1")
    assert (verdict_mark(True), verdict_mark(False)) == ("✔", "✘")
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert verdict_mark(True) == "✔"
