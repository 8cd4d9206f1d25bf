"""`montero swarm …` (and the old `montero deploy …` spellings): the docker boundary faked at
python-on-whales' `run`, exact command lines asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from typer.testing import CliRunner

from montero_ops.cli import app
from montero_ops.services import deploy

STACK_RUN = "python_on_whales.components.stack.cli_wrapper.run"
UTILS_RUN = "python_on_whales.utils.run"


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "compose.yml").write_text("services: {}\n")
    (tmp_path / "docker" / "stack.yml").write_text("version: '3.8'\nservices: {}\n")
    (tmp_path / ".env").write_text("SECRET_KEY=abc\n")
    monkeypatch.setenv("MONTERO_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MONTERO_APP_IMAGE", "montero-app:9")
    from montero_ops.client import build_client

    monkeypatch.setattr("montero_ops.state.State.client",
                        lambda self, project=None, check=True: build_client(project or self.project(),
                                                                            client_call=["true"]))
    return tmp_path


SPEC = [{"ID": "abc", "Spec": {"Name": "st_app", "TaskTemplate": {"ContainerSpec": {"Image": "montero-app:9@sha256:1"}}},
         "UpdateStatus": {"State": "completed", "Message": "update completed"}},
        {"ID": "def", "Spec": {"Name": "st_nginx", "TaskTemplate": {"ContainerSpec": {"Image": "nginx:alpine"}}}}]


def fake_docker(calls: list[list[str]], swarm: str = "active true") -> Any:
    def run(cmd: list[Any], *args: Any, **kwargs: Any) -> str:
        cmd = [str(c) for c in cmd]
        calls.append(cmd)
        if cmd[1:3] == ["info", "--format"]:
            return swarm
        if cmd[1:4] == ["service", "ls", "-q"]:
            return "abc\ndef"
        if cmd[1:3] == ["service", "inspect"]:
            return json.dumps(SPEC)
        if cmd[1:3] == ["service", "ls"]:
            return "st_app 2/2\nst_nginx 1/1"
        return ""
    return run


def test_deploy_refuses_without_a_swarm(project: Path) -> None:
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls, "inactive false")):
        result = CliRunner().invoke(app, ["swarm", "deploy", "--stack", "st"])
    assert result.exit_code == 1
    assert "not part of a swarm" in result.output and "docker swarm init" in result.output


def test_deploy_runs_stack_deploy_with_local_images(project: Path) -> None:
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls)), \
            mock.patch(STACK_RUN, return_value="") as stack_run:
        result = CliRunner().invoke(app, ["swarm", "deploy", "--stack", "st", "--json"])
    assert result.exit_code == 0, result.output
    cmd = [str(c) for c in stack_run.call_args.args[0]]
    assert cmd[-8:] == ["stack", "deploy", "--compose-file", str(project / "docker" / "stack.yml"), "--prune",
                        "--resolve-image", "never", "st"]
    env = stack_run.call_args.kwargs["env"]
    assert env["MONTERO_APP_IMAGE"] == "montero-app:9" and env["SECRET_KEY"] == "abc"
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["services"][0] == {"name": "st_app", "image": "montero-app:9", "desired": 2, "running": 2,
                                  "update_state": "completed", "update_message": "update completed"}


def test_registry_name() -> None:
    assert deploy.registry_image("montero-app:1.2", "reg.example:5000/team/") == "reg.example:5000/team/montero-app:1.2"
    assert deploy.registry_image("old.example:5000/montero-app:1", "new.example") == "new.example/montero-app:1"
    from montero_ops.errors import UsageError

    with pytest.raises(UsageError):
        deploy.registry_image("x", " ")


def test_rollback_runs_service_rollback(project: Path) -> None:
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls)):
        result = CliRunner().invoke(app, ["swarm", "rollback", "--stack", "st"])
    assert result.exit_code == 0, result.output
    assert ["service", "rollback", "--detach", "st_app"] in [c[1:] for c in calls]


def test_status_of_a_missing_stack(project: Path) -> None:
    with mock.patch(UTILS_RUN, return_value=""):
        result = CliRunner().invoke(app, ["swarm", "status", "--stack", "nope"])
    assert result.exit_code == 1
    assert "no stack named 'nope'" in result.output


def test_remove_needs_confirmation(project: Path) -> None:
    result = CliRunner().invoke(app, ["swarm", "remove", "--stack", "st"])
    assert result.exit_code == 2
    assert "refusing to remove every service of stack st" in result.output


@pytest.mark.parametrize(("old", "new"), [("swarm", "deploy"), ("status", "status"), ("rollback", "rollback")])
def test_the_old_deploy_spellings_still_work_and_name_the_new_one(project: Path, old: str, new: str) -> None:
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls)), mock.patch(STACK_RUN, return_value=""):
        result = CliRunner().invoke(app, ["deploy", old, "--stack", "st", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr.count(f"`montero deploy {old}` is now `montero swarm {new}`") == 1
    json.loads(result.stdout[result.stdout.index("{"):])  # the data on stdout is unchanged by the notice


def test_the_old_remove_spelling_keeps_its_confirmation(project: Path) -> None:
    result = CliRunner().invoke(app, ["deploy", "remove", "--stack", "st"])
    assert result.exit_code == 2
    assert "`montero deploy remove` is now `montero swarm remove`" in result.stderr
    assert "refusing to remove every service of stack st" in result.output


def test_the_old_spellings_are_hidden_from_help() -> None:
    result = CliRunner().invoke(app, ["deploy", "--help"])
    assert result.exit_code == 0
    assert "montero swarm" in result.output
    assert "Commands" not in result.output  # the old verbs work but are not offered
    swarm_help = CliRunner().invoke(app, ["swarm", "--help"]).output
    for verb in ("deploy", "status", "rollback", "remove"):
        assert verb in swarm_help
