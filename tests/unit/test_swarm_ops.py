"""Swarm operations without a daemon: doctor --swarm findings, logs --stack, backup/restore --stack.

The docker boundary is faked at python-on-whales' `run` (and subprocess for logs/backup);
the exact command lines and red lines are asserted.
"""

from __future__ import annotations

import json
from datetime import UTC
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from typer.testing import CliRunner

from montero_ops.cli import app
from montero_ops.client import plain_client
from montero_ops.errors import CommandFailed
from tests.unit import test_deploy
from tests.unit.test_deploy import SPEC, TASKS, UTILS_RUN, fake_docker, node, task

project = test_deploy.project  # the fixture: a project folder with stack files and .env

NOW = "2026-01-01T00:05:00Z"


def _doctor(specs: list[dict[str, Any]], tasks: list[dict[str, Any]], nodes: list[dict[str, Any]]) -> Any:
    from datetime import datetime

    from montero_ops.services.doctor.swarm import check_swarm

    with mock.patch(UTILS_RUN, side_effect=fake_docker([], nodes=nodes, specs=specs, tasks=tasks)), \
            mock.patch("montero_ops.services.doctor.swarm.datetime") as clock:
        clock.now.return_value = datetime(2026, 1, 1, 0, 5, tzinfo=UTC)
        clock.fromisoformat = datetime.fromisoformat
        from montero_ops.client import build_client
        from montero_ops.project import find_project

        client = build_client(find_project(None), client_call=["true"])
        return {f.id: f for f in check_swarm(client, "st")}


def test_doctor_swarm_all_well(project: Path) -> None:
    found = _doctor(SPEC, TASKS, [node("n1", "node1", "manager")])
    assert {k: (f.status.value, f.message) for k, f in found.items()} == {
        "swarm.nodes": ("pass", "1 node(s) ready and active"),
        "swarm.app": ("pass", "st_app 2/2 (node1 2)"),
        "swarm.nginx": ("pass", "st_nginx 1/1 (node1 1)"),
    }


def test_doctor_swarm_names_down_nodes_unplaceable_and_failing_tasks(project: Path) -> None:
    nodes = [node("n1", "node1", "manager"), node("n3", "node3", state="down")]
    tasks = [task("t1", "abc", "montero-app:9@sha256:1"),
             task("t2", "abc", "montero-app:9@sha256:1", state="pending", err="no suitable node (1 node not "
                  "available for new tasks; scheduling constraints not satisfied on 1 node)"),
             task("t3", "abc", "montero-app:9@sha256:1", state="failed", desired="shutdown",
                  err="task: non-zero exit (1)", when="2026-01-01T00:04:00Z"),
             task("t4", "def", "nginx:alpine")]
    found = _doctor(SPEC, tasks, nodes)
    down = found["swarm.node.node3"]
    assert (down.status.value, down.message) == ("fail", "node node3 (n3, worker) is down")
    assert "docker node rm --force n3" in down.fix
    placement = found["swarm.app.placement"]
    assert placement.status.value == "fail"
    assert placement.message.startswith("st_app: 1 task(s) cannot be placed: no suitable node")
    app_finding = found["swarm.app"]
    assert app_finding.status.value == "fail"
    assert app_finding.message == "st_app runs 1/2 replicas, update completed: update completed"
    failures = found["swarm.app.failures"]
    assert failures.status.value == "warn" and "1 task(s) failed in the last 10 minutes; last: task: non-zero exit (1)" \
        in failures.message


def test_doctor_swarm_exit_code_and_json(project: Path) -> None:
    nodes = [node("n1", "node1", "manager"), node("n3", "node3", state="down")]
    with mock.patch(UTILS_RUN, side_effect=fake_docker([], nodes=nodes)), \
            mock.patch("montero_ops.state.State.client", lambda self, project=None, check=True: _client()):
        result = CliRunner().invoke(app, ["doctor", "--swarm", "--stack", "st", "--json"])
    assert result.exit_code == 1
    ids = {f["id"]: f["status"] for f in json.loads(result.stdout)}
    assert ids["swarm.node.node3"] == "fail" and ids["swarm.app"] == "pass"


def _client() -> Any:
    from montero_ops.client import build_client
    from montero_ops.project import find_project

    return build_client(find_project(None), client_call=["true"])


def test_logs_of_a_swarm_service(project: Path) -> None:
    with mock.patch(UTILS_RUN, side_effect=fake_docker([])), \
            mock.patch("montero_ops.services.logs.subprocess.call", return_value=0) as call:
        result = CliRunner().invoke(app, ["logs", "--stack", "st", "app", "--tail", "5", "--since", "10m"])
    assert result.exit_code == 0, result.output
    assert call.call_args.args[0] == ["docker", "service", "logs", "--tail", "5", "--since", "10m", "st_app"]


def test_logs_swarm_refusals(project: Path) -> None:
    with mock.patch(UTILS_RUN, side_effect=fake_docker([])), \
            mock.patch("montero_ops.services.logs.subprocess.call", return_value=0) as call:
        unknown = CliRunner().invoke(app, ["logs", "--stack", "st", "web"])
        follow_all = CliRunner().invoke(app, ["logs", "--stack", "st", "-f"])
    assert unknown.exit_code == 2 and "no service named web in stack st (services: app, nginx)" in unknown.output
    assert follow_all.exit_code == 2 and "--follow on a swarm follows one service" in follow_all.output
    assert not call.called


def test_backup_stack_is_postgres_only(project: Path) -> None:
    result = CliRunner().invoke(app, ["backup", "sqlite", "--stack", "st"])
    assert result.exit_code == 2
    assert "--stack works with postgres only, not sqlite" in result.output


def test_swarm_pg_dump_runs_on_the_stack_network_without_the_password_on_the_line(project: Path) -> None:
    from montero_ops.project import find_project
    from montero_ops.services.backups import postgres as backup_postgres

    (project / ".env").write_text("SECRET_KEY=abc\nPOSTGRES_PASSWORD=s3cr3t-pw\n")
    postgres = {"ID": "pg1", "Spec": {"Name": "st_postgres", "Mode": {"Replicated": {"Replicas": 1}}, "TaskTemplate": {
        "ContainerSpec": {"Image": "reg:5000/montero-postgres:15@sha256:ab"}}}}
    with mock.patch(UTILS_RUN, side_effect=fake_docker([], specs=[postgres])):
        t = backup_postgres.target(find_project(project), stack="st", swarm=plain_client())
    cmd, env = backup_postgres._command(t, ["pg_dump", "-Fc", "-U", "montero", "-d", "montero"], "postgres")
    assert cmd == ["docker", "run", "--rm", "-i", "--log-driver", "none", "--no-healthcheck", "--network",
                   "st_default", "-e", "PGPASSWORD", "--entrypoint", "pg_dump", "reg:5000/montero-postgres:15@sha256:ab",
                   "-h", "postgres", "-Fc", "-U", "montero", "-d", "montero"]
    assert env is not None and env["PGPASSWORD"] == "s3cr3t-pw"
    assert "s3cr3t-pw" not in " ".join(cmd)


def test_context_option_reaches_every_docker_process(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    import os

    seen: list[str | None] = []

    def run(cmd: list[Any], *args: Any, **kwargs: Any) -> str:
        seen.append(os.environ.get("DOCKER_CONTEXT"))
        return fake_docker([])(cmd)

    with mock.patch(UTILS_RUN, side_effect=run):
        result = CliRunner().invoke(app, ["--context", "manager1", "swarm", "status", "--stack", "st"])
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    assert result.exit_code == 0, result.output
    assert seen and set(seen) == {"manager1"}


def test_swarm_restore_stops_the_app_and_waits_for_its_replicas_back(project: Path) -> None:
    """The app's replicas and its running tasks come from the typed service and task models."""
    from montero_ops.project import find_project
    from montero_ops.services.backups import postgres as backup_postgres

    t = backup_postgres.PgTarget(find_project(project), "montero", "montero", stack="st", swarm=plain_client())
    unused = mock.Mock(spec=[])  # the SDK client: a swarm's app is read through SWARM, never through it
    scaled = mock.Mock(returncode=0, stdout="", stderr="")
    starting = [task("t1", "abc", "montero-app:9@sha256:1"),
                task("t2", "abc", "montero-app:9@sha256:1", state="starting"),
                task("t3", "abc", "montero-app:9@sha256:1", state="shutdown", desired="shutdown"),
                task("t4", "def", "nginx:alpine")]
    with mock.patch(UTILS_RUN, side_effect=fake_docker([], tasks=starting)), \
            mock.patch("montero_ops.services.backups.postgres.subprocess.run", return_value=scaled) as run:
        start = backup_postgres._stop_app(t, unused)
        assert run.call_args.args[0] == ["docker", "service", "scale", "--detach", "st_app=0"]
        with pytest.raises(CommandFailed, match="st_app is not back at 2 healthy replicas after 0.1s"):
            start(0.1)  # one of SPEC's 2 replicas runs; the other starts, the third is history
    assert run.call_args.args[0] == ["docker", "service", "scale", "--detach", "st_app=2"]
    with mock.patch(UTILS_RUN, side_effect=fake_docker([])), \
            mock.patch("montero_ops.services.backups.postgres.subprocess.run", return_value=scaled):
        backup_postgres._stop_app(t, unused)(5)  # TASKS: both of st_app's replicas run
