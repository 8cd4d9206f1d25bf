"""`montero swarm …` (and the old `montero deploy …` spellings): the docker boundary faked at
python-on-whales' `run` (stack deploy) and services/dockercmd.run, exact command lines asserted."""

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
UTILS_RUN = "montero_ops.services.dockercmd.run"  # the docker commands montero runs itself
STRONG_KEY = "k3y-" + "0123456789abcdef" * 3  # long and no placeholder: the deploy refuses a weak one


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "compose.yml").write_text("services: {}\n")
    (tmp_path / "docker" / "stack.yml").write_text("version: '3.9'\nservices: {}\n")
    (tmp_path / "docker" / "stack.postgres.yml").write_text("version: '3.9'\nservices: {}\n")
    (tmp_path / ".env").write_text(f"SECRET_KEY={STRONG_KEY}\n")
    monkeypatch.setenv("MONTERO_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MONTERO_APP_IMAGE", "montero-app:9")
    from montero_ops.client import build_client

    monkeypatch.setattr("montero_ops.state.State.client",
                        lambda self, project=None, check=True: build_client(project or self.project(),
                                                                            client_call=["true"]))
    return tmp_path


SPEC = [{"ID": "abc", "Spec": {"Name": "st_app", "Mode": {"Replicated": {"Replicas": 2}},
                                "TaskTemplate": {"ContainerSpec": {"Image": "montero-app:9@sha256:1"}}},
         "UpdateStatus": {"State": "completed", "Message": "update completed", "StartedAt": "2026-01-01T00:00:00Z"}},
        {"ID": "def", "Spec": {"Name": "st_nginx", "Mode": {"Replicated": {"Replicas": 1}},
                                "TaskTemplate": {"ContainerSpec": {"Image": "nginx:alpine"}}}}]


def node(nid: str, name: str, role: str = "worker", state: str = "ready", **labels: str) -> dict[str, Any]:
    return {"ID": nid, "Spec": {"Labels": {"montero.node": name, **labels}, "Role": role, "Availability": "active"},
            "Description": {"Hostname": "vm"}, "Status": {"State": state, "Addr": "10.0.0.1"},
            **({"ManagerStatus": {"Leader": True}} if role == "manager" else {})}


ONE_NODE = [node("n1", "node1", "manager")]


def task(tid: str, service: str, image: str, node_id: str = "n1", state: str = "running", desired: str = "running",
         err: str = "", when: str = "2026-01-01T00:00:01Z") -> dict[str, Any]:
    return {"ID": tid, "ServiceID": service, "NodeID": node_id, "Slot": 1, "DesiredState": desired,
            "Status": {"State": state, "Err": err, "Timestamp": when},
            "Spec": {"ContainerSpec": {"Image": image}}}


TASKS = [task("t1", "abc", "montero-app:9@sha256:1"), task("t2", "abc", "montero-app:9@sha256:1"),
         task("t3", "def", "nginx:alpine")]


def fake_docker(calls: list[list[str]], swarm: str = "active true", nodes: list[dict[str, Any]] | None = None,
                specs: list[dict[str, Any]] | None = None, tasks: list[dict[str, Any]] | None = None) -> Any:
    nodes = ONE_NODE if nodes is None else nodes
    specs = SPEC if specs is None else specs
    tasks = TASKS if tasks is None else tasks

    def run(cmd: list[Any], *args: Any, **kwargs: Any) -> str:
        cmd = [str(c) for c in cmd]
        calls.append(cmd)
        if cmd[1:3] == ["system", "info"]:
            state, _, control = swarm.partition(" ")
            return json.dumps({"Swarm": {"LocalNodeState": state, "ControlAvailable": control == "true"}})
        # python-on-whales' typed calls (node.list, service.list, service.ps, task/service/node inspect)
        if cmd[1:4] == ["node", "list", "--quiet"]:
            return "\n".join(n["ID"] for n in nodes)
        if cmd[1:4] == ["service", "list", "--quiet"]:
            return "\n".join(s["ID"] for s in specs)
        if cmd[1:3] == ["service", "inspect"] and cmd[-2:] == ["--format", "{{.ID}}"]:
            return "\n".join(cmd[3:-2])
        if cmd[1:3] == ["service", "ps"]:
            wanted = {s["ID"] for s in specs if s["ID"] in cmd[5:] or s["Spec"]["Name"] in cmd[5:]}
            return "\n".join(t["ID"] for t in tasks if t["ServiceID"] in wanted)
        if cmd[1:3] == ["node", "inspect"]:
            return json.dumps([n for n in nodes if n["ID"] in cmd[3:]])
        if cmd[1:4] == ["service", "ls", "-q"]:
            return "\n".join(s["ID"] for s in specs)
        if cmd[1:3] == ["service", "inspect"]:
            return json.dumps([s for s in specs if s["ID"] in cmd[3:] or s["Spec"]["Name"] in cmd[3:]])
        if cmd[1:2] == ["inspect"]:
            return json.dumps([t for t in tasks if t["ID"] in cmd[2:]])
        if cmd[1:3] == ["image", "inspect"]:
            return json.dumps(["reg.example:5000/montero-app@sha256:feed"])
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
    stack_file = project / "docker" / "stack.yml"
    assert cmd[-10:-3] == ["stack", "deploy", "--compose-file", str(stack_file), "--compose-file", cmd[-5], "--prune"]
    assert cmd[-3:] == ["--resolve-image", "never", "st"]
    env = stack_run.call_args.kwargs["env"]
    assert env["MONTERO_APP_IMAGE"] == "montero-app:9" and env["SECRET_KEY"] == STRONG_KEY
    out = json.loads(result.stdout[result.stdout.index("{"):])
    assert out["services"][0] == {"name": "st_app", "image": "montero-app:9", "desired": 2, "running": 2,
                                  "update_state": "completed", "update_message": "update completed",
                                  "tasks_per_node": {"node1": 2}}
    assert out["nodes"] == [{"name": "node1", "id": "n1", "role": "manager", "state": "ready",
                             "availability": "active", "leader": True, "tasks": 3}]


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


THREE = [node("n1", "node1", "manager", **{"montero.edge": "true", "montero.redis": "true",
                                            "montero.postgres": "true"}),
         node("n2", "node2"), node("n3", "node3")]


def test_multi_node_without_registry_is_refused_before_anything_changes(project: Path) -> None:
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls, nodes=THREE)), \
            mock.patch(STACK_RUN, return_value="") as stack_run:
        result = CliRunner().invoke(app, ["swarm", "deploy", "--stack", "st", "--profile", "postgres"])
    assert result.exit_code == 2, result.output
    assert "this swarm has 3 nodes and montero-app:9 is a local image: the other nodes cannot pull it" in result.output
    assert "--registry" in result.output
    assert not stack_run.called and not [c for c in calls if "push" in c or "tag" in c]


def test_multi_node_sqlite_is_refused_unless_pinned(project: Path) -> None:
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls, nodes=THREE)), \
            mock.patch(STACK_RUN, return_value="") as stack_run:
        result = CliRunner().invoke(app, ["swarm", "deploy", "--stack", "st", "--registry", "reg.example:5000"])
    assert result.exit_code == 2, result.output
    assert "this swarm has 3 nodes and the app uses SQLite: replicas on different nodes would each write their own" \
        in " ".join(result.output.split())
    assert "montero.sqlite=true" in result.output and "--profile postgres" in result.output
    assert not stack_run.called


def test_placement_by_label() -> None:
    from montero_ops.errors import UsageError
    from montero_ops.services import swarm

    nodes = [swarm.node_from_inspect(n) for n in THREE]
    plan = swarm.plan_placement(nodes, postgres=True)
    assert plan.constraints == {"redis": ["node.labels.montero.redis==true"],
                                "nginx": ["node.labels.montero.edge==true"],
                                "postgres": ["node.labels.montero.postgres==true"]}
    assert "app" not in plan.constraints and plan.edge_nodes == 1
    pinned = [swarm.node_from_inspect(n) for n in [*THREE[:2], node("n3", "node3", **{"montero.sqlite": "true"})]]
    plan = swarm.plan_placement(pinned, postgres=False)
    assert plan.constraints["app"] == ["node.labels.montero.sqlite==true"]
    assert "app pinned to node3 (montero.sqlite=true): SQLite is one file on one node" in plan.notes
    assert swarm.plan_placement(nodes[:1], postgres=False).constraints == {}  # one node: anywhere
    unlabelled = [swarm.node_from_inspect(n) for n in (node("a", "a", "manager"), node("b", "b"))]
    with pytest.raises(UsageError, match="no node is labelled montero.redis=true"):
        swarm.plan_placement(unlabelled, postgres=True)
    two_pg = [*nodes, swarm.node_from_inspect(node("n4", "node4", **{"montero.postgres": "true"}))]
    with pytest.raises(UsageError, match=r"2 nodes are labelled montero.postgres=true \(node1, node4\)"):
        swarm.plan_placement(two_pg, postgres=True)


def test_override_layer_carries_tls_secrets_never_env(tmp_path: Path) -> None:
    from montero_ops.services import swarm

    plan = swarm.plan_placement([swarm.node_from_inspect(n) for n in THREE], postgres=True)
    secrets = {"st_tls_fullchain_abc": tmp_path / "fullchain.pem", "st_tls_privkey_abc": tmp_path / "privkey.pem"}
    layer = deploy.override_file(plan, secrets, multi=True)
    nginx = layer["services"]["nginx"]
    assert nginx["deploy"] == {"placement": {"constraints": ["node.labels.montero.edge==true"],
                                             "max_replicas_per_node": 1}, "replicas": 1}
    assert nginx["secrets"] == [
        {"source": "st_tls_fullchain_abc", "target": "/etc/nginx/certs/fullchain.pem", "mode": 0o444},
        {"source": "st_tls_privkey_abc", "target": "/etc/nginx/certs/privkey.pem", "mode": 0o400}]
    assert layer["secrets"]["st_tls_privkey_abc"] == {"name": "st_tls_privkey_abc", "file": str(tmp_path / "privkey.pem")}
    assert "environment" not in nginx


def test_tls_secret_names_follow_the_certificate(project: Path) -> None:
    from montero_ops.project import find_project

    certs = project / "docker" / "certs"
    certs.mkdir()
    p = find_project(project)
    assert deploy.tls_secrets(p, "st") is None
    (certs / "fullchain.pem").write_text("chain one")
    (certs / "privkey.pem").write_text("key one")
    first = deploy.tls_secrets(p, "st")
    (certs / "fullchain.pem").write_text("chain two")
    second = deploy.tls_secrets(p, "st")
    assert first and second and set(first) != set(second)
    assert all(name.startswith(("st_tls_fullchain_", "st_tls_privkey_")) for name in [*first, *second])


def test_registry_push_deploys_by_digest(project: Path) -> None:
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls)), \
            mock.patch(STACK_RUN, return_value="") as stack_run:
        result = CliRunner().invoke(app, ["swarm", "deploy", "--stack", "st", "--registry", "reg.example:5000",
                                          "--no-wait"])
    assert result.exit_code == 0, result.output
    pushed = [c[1:] for c in calls]
    assert ["image", "tag", "montero-app:9", "reg.example:5000/montero-app:9"] in pushed
    assert ["image", "push", "--quiet", "reg.example:5000/montero-app:9"] in pushed
    env = stack_run.call_args.kwargs["env"]
    assert env["MONTERO_APP_IMAGE"] == "reg.example:5000/montero-app:9@sha256:feed"


def test_a_rolled_back_update_fails_with_the_task_error_and_logs(project: Path) -> None:
    rolled = [{**SPEC[0], "UpdateStatus": {"State": "rollback_completed", "Message": "rollback completed",
                                           "StartedAt": "2026-01-02T00:00:00Z"}}, SPEC[1]]
    tasks = [*TASKS, task("bad1", "abc", "montero-app:10@sha256:2", state="failed", desired="shutdown",
                          err="task: non-zero exit (3)", when="2026-01-02T00:00:05Z")]
    calls: list[list[str]] = []
    logs = mock.Mock(stdout="st_app.1.bad1@vm    | boom: broken on purpose\n")
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls, specs=rolled, tasks=tasks)), \
            mock.patch("montero_ops.services.swarm.subprocess.run", return_value=logs) as log_run:
        from montero_ops.client import build_client
        from montero_ops.errors import CommandFailed
        from montero_ops.project import find_project

        client = build_client(find_project(project), client_call=["true"])
        progress: list[str] = []
        with pytest.raises(CommandFailed) as failed:
            deploy.wait_converged(client, "st", 5, progress.append, poll=0.01,
                                  since={"st_app": "2026-01-01T00:00:00Z", "st_nginx": ""})
    assert failed.value.message == ("st_app: the update failed and was rolled back to the previous version: "
                                    "rollback completed")
    assert progress == ["task bad1 (failed): task: non-zero exit (3)", "  boom: broken on purpose"]
    assert log_run.call_args.args[0][-4:] == ["--tail", "12", "bad1"] or "bad1" in log_run.call_args.args[0]


@pytest.mark.parametrize("on_manager", [True, False])
def test_an_unhealthy_task_names_its_health_probes(project: Path, on_manager: bool) -> None:
    bad = task("bad1", "abc", "montero-app:10@sha256:2", state="failed", desired="shutdown",
               err="task: non-zero exit (143): dockerexec: unhealthy container", when="2026-01-02T00:00:05Z")
    bad["Status"]["ContainerStatus"] = {"ContainerID": "c0ffee" * 10}
    health = {"Status": "unhealthy", "Log": [
        {"ExitCode": 1, "Output": "first"}, {"ExitCode": 1, "Output": "curl: (7) refused\n"},
        {"ExitCode": 1, "Output": ""}, {"ExitCode": 1, "Output": "HTTP/1.0 503\n  degraded"}]}

    def run(cmd: list[str], **kwargs: Any) -> Any:
        if "container" in cmd:
            return mock.Mock(returncode=0 if on_manager else 1, stdout=json.dumps(health) if on_manager else "",
                             stderr="" if on_manager else "Error: No such container")
        return mock.Mock(returncode=0, stdout="st_app.1.bad1@vm    | starting\n")

    from montero_ops.client import build_client
    from montero_ops.project import find_project
    from montero_ops.services import swarm

    client = build_client(find_project(project), client_call=["true"])
    tasks = [swarm.task_from_inspect(bad, {"abc": "st_app"})]
    with mock.patch("montero_ops.services.swarm.subprocess.run", side_effect=run) as ran:
        lines = swarm.failure_reason(client, "st_app", tasks)
    assert lines[:2] == ["task bad1 (failed): task: non-zero exit (143): dockerexec: unhealthy container",
                         "  starting"]
    if on_manager:
        assert lines[2:] == ["  health probe exit 1: curl: (7) refused", "  health probe exit 1: (no output)",
                             "  health probe exit 1: HTTP/1.0 503 degraded"]
    else:
        assert lines[2:] == [("  health output: on the task's node (n1): docker inspect --format "
                              "'{{json .State.Health.Log}}' c0ffeec0ffee")]
    assert ran.call_args_list[-1].args[0][-5:] == ["container", "inspect", "--format", "{{json .State.Health}}",
                                                   "c0ffee" * 10]


def test_wait_counts_only_tasks_on_the_new_spec(project: Path) -> None:
    """Right after stack deploy the old tasks still run and no update status exists yet."""
    fresh = [{**SPEC[0], "Spec": {**SPEC[0]["Spec"], "TaskTemplate": {"ContainerSpec": {"Image": "montero-app:10"}}},
              "UpdateStatus": None}, SPEC[1]]
    calls: list[list[str]] = []
    with mock.patch(UTILS_RUN, side_effect=fake_docker(calls, specs=fresh)):
        from montero_ops.client import build_client
        from montero_ops.errors import CommandFailed
        from montero_ops.project import find_project

        client = build_client(find_project(project), client_call=["true"])
        with pytest.raises(CommandFailed, match=r"not converged after 0.05s: st_app 0/2"):
            deploy.wait_converged(client, "st", 0.05, poll=0.01, since={"st_app": "x", "st_nginx": ""})
