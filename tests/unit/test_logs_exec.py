"""logs, exec, shell, test, migrate: commands attached to the terminal."""

from __future__ import annotations

import subprocess
from typing import Any, ClassVar

import pytest
from python_on_whales.exceptions import DockerException

from tests.unit.conftest import DockerCalls, FakeEngine, container


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, docker: DockerCalls, engine: FakeEngine) -> list[list[str]]:
    """`logs` runs compose itself (no python-on-whales): record subprocess.call."""
    made: list[list[str]] = []

    def call(cmd: list[str], **kw: Any) -> int:
        made.append(list(cmd))
        return 0

    monkeypatch.setattr(subprocess, "call", call)
    return made


def test_logs_options(cli, calls: list[list[str]], docker: DockerCalls, prefix: list[str]) -> None:
    result = cli("logs", "app", "redis", "--tail", "100", "--since", "10m", "--until", "1m", "--timestamps")
    assert result.exit_code == 0
    assert calls == [prefix + ["logs", "--tail", "100", "--since", "10m", "--until", "1m", "--timestamps",
                               "app", "redis"]]
    assert docker.calls == []


def test_logs_with_env_file(cli, calls: list[list[str]], project) -> None:
    from tests.unit.conftest import compose_prefix

    (project / ".env").write_text("SECRET_KEY=x\n")
    assert cli("logs").exit_code == 0
    assert calls == [compose_prefix(project, env_file=True) + ["logs"]]


def test_logs_failure_keeps_the_exit_code(cli, monkeypatch: pytest.MonkeyPatch, docker, engine) -> None:
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: 15)
    monkeypatch.setattr("montero_ops.client.compose_plugin_missing", lambda: False)
    assert cli("logs", "app").exit_code == 15


def test_logs_without_compose_plugin_exit_3(cli, monkeypatch: pytest.MonkeyPatch, docker, engine) -> None:
    monkeypatch.setattr(subprocess, "call", lambda cmd, **kw: 1)
    monkeypatch.setattr("montero_ops.client.compose_plugin_missing", lambda: True)
    result = cli("logs")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == "Error: the Docker Compose v2 plugin is missing"


def test_logs_bad_tail(cli, calls: list[list[str]]) -> None:
    result = cli("logs", "--tail", "ten")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: invalid --tail 'ten': expected a number or 'all'"
    assert calls == []


class FakeProcess:
    started: ClassVar[list[list[str]]] = []

    def __init__(self, cmd: list[str], interrupt: bool = False) -> None:
        self.cmd = cmd
        self.interrupt = interrupt
        self.terminated = False

    def wait(self, timeout: float | None = None) -> int:
        if self.interrupt and not self.terminated:
            raise KeyboardInterrupt
        return 0

    def terminate(self) -> None:
        self.terminated = True


@pytest.mark.parametrize("interrupt", [False, True])
def test_logs_follow_runs_its_own_process_and_ends_it(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str],
                                                      monkeypatch: pytest.MonkeyPatch, interrupt: bool) -> None:
    made: list[FakeProcess] = []

    def popen(cmd: list[str], **kw: Any) -> FakeProcess:
        made.append(FakeProcess(list(cmd), interrupt))
        return made[-1]

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setattr("montero_ops.services.status.start_defined_services", lambda project: lambda: ["app"])
    result = cli("logs", "-f", "app")
    assert result.exit_code == 0
    assert made[0].cmd == prefix + ["logs", "--follow", "app"]
    assert made[0].terminated is interrupt
    assert docker.calls == []


def test_exec_without_tty_propagates_exit_code(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    engine.set(container("app"))
    docker.respond(lambda c: "exec" in c, DockerException(["docker"], 3))
    result = cli("exec", "app", "--user", "root", "--", "ls", "-la", "/app")
    assert result.exit_code == 3, result.output
    assert docker.calls == [prefix + ["exec", "-T", "--user", "root", "app", "ls", "-la", "/app"]]


def test_exec_with_tty(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str], monkeypatch) -> None:
    engine.set(container("app"))
    monkeypatch.setattr("montero_ops.commands.exec._tty", lambda: True)
    assert cli("exec", "app", "--", "true").exit_code == 0
    assert docker.calls == [prefix + ["exec", "app", "true"]]


def test_exec_when_service_is_not_running(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    engine.set(container("app", state="exited", health=None, exit_code=1))
    result = cli("exec", "app", "--", "true")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == ["Error: service 'app' is not running", "  Fix: run `montero up` first"]
    assert docker.calls == []


def test_shell_prefers_bash_and_can_be_root(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str]) -> None:
    engine.set(container("app"), container("redis"))
    assert cli("shell", "--root").exit_code == 0
    assert cli("shell", "redis").exit_code == 0
    script = "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi"
    assert docker.calls == [
        prefix + ["exec", "-T", "--user", "root", "app", "sh", "-c", script],
        prefix + ["exec", "-T", "redis", "sh", "-c", script],
    ]


@pytest.mark.parametrize(
    ("args", "alembic"),
    [
        (["current"], ["current"]),
        (["history"], ["history", "--verbose"]),
        (["revision", "-m", "add invoices", "--autogenerate"], ["revision", "-m", "add invoices", "--autogenerate"]),
        (["upgrade"], ["upgrade", "head"]),
        (["upgrade", "ab12"], ["upgrade", "ab12"]),
        (["downgrade"], ["downgrade", "-1"]),
        (["downgrade", "-2"], ["downgrade", "-2"]),
    ],
)
def test_migrate(cli, docker: DockerCalls, engine: FakeEngine, prefix: list[str], args, alembic) -> None:
    engine.set(container("app"))
    result = cli("migrate", *args)
    assert result.exit_code == 0, result.output
    assert docker.calls == [prefix + ["exec", "-T", "--workdir", "/app", "app", "alembic", *alembic]]


def test_migrate_revision_needs_a_message(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    result = cli("migrate", "revision")
    assert result.exit_code == 2
    assert "Missing option '--message'" in result.output
    assert docker.calls == []


def test_migrate_needs_the_stack(cli, docker: DockerCalls, engine: FakeEngine) -> None:
    result = cli("migrate", "upgrade")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == "Error: service 'app' is not running"


def test_logs_of_an_unknown_service_says_which_exist(cli, calls: list[list[str]],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("montero_ops.services.status.start_defined_services",
                        lambda project: lambda: ["app", "redis"])
    result = cli("logs", "app", "nosuch")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "Error: no service named nosuch in this stack (services: app, redis)",
        "  Fix: pick one of those, or run `montero logs` for all of them",
    ]
    assert calls == []


@pytest.mark.parametrize("option", ["--since", "--until"])
@pytest.mark.parametrize("value", ["banana", "10x", "1h 30m", "2024-13", "2024-05-01 10:00", "yesterday"])
def test_logs_bad_time_is_one_line_exit_2(cli, calls: list[list[str]], option: str, value: str) -> None:
    """Issue 12.11: `--since banana` reached compose, printed nothing and exited 0."""
    result = cli("logs", "app", option, value)
    assert result.exit_code == 2
    assert result.stderr == (
        f"Error: invalid {option} '{value}': expected a duration (10m, 1h30m), an RFC 3339 time "
        "(2024-05-01T10:00:00Z) or a Unix timestamp\n"
    )
    assert calls == []


@pytest.mark.parametrize("value", ["10m", "1h30m", "1.5h", "300ms", "1700000000", "1700000000.5", "2024-05-01",
                                   "2024-05-01T10:00:00Z", "2024-05-01T10:00:00.123+02:00", "2024-05-01T10:00"])
def test_logs_docker_time_forms_pass(value: str) -> None:
    from montero_ops.services.logs import check_time

    check_time("--since", value)
