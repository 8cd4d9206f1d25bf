"""Issue 14 point 7: `deploy`, `rollback`, `releases` on one host or on a swarm stack. The target is
chosen by how the stack runs; on a swarm a release is a start-first `docker service update`. The
docker CLI is faked at the boundary (services/swarm.docker and the calls release_swarm makes)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import Result

from montero_ops.errors import CommandFailed, UsageError
from montero_ops.project import Project
from montero_ops.services import release_swarm as rs
from montero_ops.services import releases as rel
from montero_ops.services import targets
from montero_ops.services.deploy import ServiceState, StackState
from montero_ops.services.release_deploy import DeployFailed
from montero_ops.services.swarm import Node

IMAGE_ID = "sha256:" + "ab" * 32


# ------------------------------------------------------------------ choosing the target


def test_the_target_is_how_the_stack_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    project = Project(tmp_path, "shop", tmp_path / ".env", ())
    asked: list[str] = []

    def exists(client: Any, stack: str) -> bool:
        asked.append(stack)
        return stack == "shop"

    monkeypatch.setattr(rs, "stack_exists", exists)
    monkeypatch.delenv("MONTERO_STACK", raising=False)
    never = lambda: pytest.fail("no host lookup with --stack")
    assert targets.choose(project, "edge", never, lambda: None) == targets.Target("swarm", "edge")
    assert targets.choose(project, None, lambda: True, lambda: None) == targets.HOST
    assert asked == []  # replicas on this host: the swarm is not asked
    assert targets.choose(project, None, lambda: False, lambda: None) == targets.HOST  # no stack "montero"
    monkeypatch.setenv("MONTERO_STACK", "shop")
    assert targets.choose(project, None, lambda: False, lambda: None) == targets.Target("swarm", "shop")
    assert asked == ["montero", "shop"]


def test_a_swarm_task_of_an_image_compose_built_is_not_a_host_replica(tmp_path: Path) -> None:
    from tests.unit.conftest import FakeEngine, container

    project = Project(tmp_path, "shop", tmp_path / ".env", ())
    task = container("app")
    task[0]["Labels"]["com.docker.swarm.service.id"] = "svc1"  # the image's compose labels came along
    engine = FakeEngine()
    engine.set(task, container("redis"))
    assert not targets.host_runs(engine, project)  # type: ignore[arg-type]
    engine.set(task, container("app", number=2))
    assert targets.host_runs(engine, project)  # type: ignore[arg-type]


def test_each_target_keeps_its_own_history(tmp_path: Path) -> None:
    project = Project(tmp_path, "shop", tmp_path / ".env", ())
    assert rel.history_path(project) == tmp_path / ".montero" / "releases.json"
    assert targets.history(project, targets.Target("swarm", "shop")).path == \
        tmp_path / ".montero" / "releases-swarm-shop.json"


# ------------------------------------------------------------------ the swarm's how


@pytest.fixture()
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.delenv("MONTERO_APP_IMAGE", raising=False)
    monkeypatch.delenv("MONTERO_KEEP_RELEASES", raising=False)
    return Project(tmp_path, "shop", tmp_path / ".env", (tmp_path / "docker" / "compose.yml",))


class FakeSwarm:
    """The docker CLI of a one-node swarm running stack `shop` (what release_swarm asks and does)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, nodes: int = 1) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.image = "shop-app:latest"
        self.waits: list[dict[str, Any]] = []
        self.fail_with: list[str] | None = None
        self.built: list[str] = []
        node = Node(id="n1", name="n1", role="manager", state="ready", availability="active", leader=True)
        monkeypatch.setattr(rs, "_docker", self.docker)
        monkeypatch.setattr(rs, "require_manager", lambda client: None)
        monkeypatch.setattr(rs.swarm, "nodes", lambda client: [node] * nodes)
        monkeypatch.setattr(rs, "app_spec", lambda client, stack: {"Spec": {
            "Name": f"{stack}_app", "Mode": {"Replicated": {"Replicas": 2}},
            "TaskTemplate": {"ContainerSpec": {"Image": self.image}}}})
        monkeypatch.setattr(rs, "build_release", lambda client, project, tag, progress: self.built.append(tag))
        monkeypatch.setattr(rs, "probe_target", lambda client, stack: None)
        monkeypatch.setattr(rs, "_update_marks", lambda client, stack: {"shop_app": ""})
        monkeypatch.setattr(rs, "wait_converged", self.wait)

    def docker(self, client: Any, *args: str) -> str:
        self.calls.append(args)
        if args[:2] == ("image", "inspect"):
            return IMAGE_ID
        if args[:2] == ("service", "update"):
            self.image = args[args.index("--image") + 1]
        return ""

    def wait(self, client: Any, stack: str, timeout: float, progress: Callable[[str], None] = lambda _m: None,
             since: dict[str, str] | None = None, check: Callable[[], None] | None = None) -> StackState:
        self.waits.append({"timeout": timeout, "since": since})
        if since is not None and self.fail_with is not None:
            for line in self.fail_with:
                progress(line)
            raise CommandFailed("shop_app: the update failed and was rolled back to the previous version: "
                                "update rolled back due to failure or early termination of task abc")
        return StackState(stack, services=[ServiceState("shop_app", self.image, 2, 2, "completed")])

    def updates(self) -> list[tuple[str, ...]]:
        return [c for c in self.calls if c[:2] == ("service", "update")]


def test_a_swarm_release_is_a_start_first_service_update(shop: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSwarm(monkeypatch)
    outcome = rs.deploy(None, shop, "shop", timeout=100)  # type: ignore[arg-type]
    release = outcome.release
    assert fake.built == [release.image] and release.image.startswith("shop-app:")
    (update,) = fake.updates()
    assert update[-1] == "shop_app" and update[update.index("--image") + 1] == release.image
    for flag, value in (("--update-order", "start-first"), ("--update-failure-action", "rollback"),
                        ("--rollback-order", "start-first")):
        assert update[update.index(flag) + 1] == value
    assert "--no-resolve-image" in update  # a local image: no registry lookup
    assert fake.waits[0]["timeout"] == 200  # per replica, as on one host
    assert ("image", "tag", release.image, "shop-app:latest") in fake.calls  # `swarm deploy` later: same bytes
    assert release.outcome == "ok" and release.receipt and release.receipt.replicas_replaced == 2
    assert outcome.previous and outcome.previous.startswith("adopted-")
    assert outcome.notes[0] == rs.NO_GATE
    history = rs.load_history(shop, "shop")
    assert history.current == release.id and [r.kind for r in history.releases] == ["adopted", "deploy"]
    assert not rel.history_path(shop).exists()  # this host's history is untouched


def test_a_failing_swarm_update_is_rolled_back_with_its_cause(shop: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSwarm(monkeypatch)
    fake.fail_with = ["task abc123def456 (failed): task: non-zero exit (3)",
                      "  Traceback (most recent call last):", "  RuntimeError: broken release",
                      "  gunicorn.errors.HaltServer: <HaltServer 'Worker failed to boot.' 3>",
                      "  [2026-12-02 15:26:04 -0500] [1] [ERROR] Worker (pid:33) was sent SIGTERM!"]
    with pytest.raises(DeployFailed) as failed:
        rs.deploy(None, shop, "shop")  # type: ignore[arg-type]
    history = rs.load_history(shop, "shop")
    adopted, bad = history.releases
    assert failed.value.message.startswith(f"deploy of {bad.id} to stack shop failed and was rolled back to "
                                           f"{adopted.id}: shop_app: the update failed")
    assert failed.value.message.endswith(": RuntimeError: broken release")
    assert bad.outcome == "rolled-back" and history.current == adopted.id
    assert bad.failure and bad.failure["replica"] == "abc123def456" and bad.failure["returned_to"] == adopted.id
    assert "RuntimeError: broken release" in bad.failure["logs"]
    assert [w["since"] for w in fake.waits] == [{"shop_app": ""}, None]  # waited for the swarm's own rollback
    assert not any(c[:2] == ("service", "rollback") for c in fake.calls)  # the swarm did it itself
    assert ("image", "tag", bad.image, "shop-app:latest") not in fake.calls


def test_a_probe_error_asks_the_swarm_to_roll_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, ...]] = []
    monkeypatch.setattr(rs, "_docker", lambda client, *args: calls.append(args) or "")
    monkeypatch.setattr(rs, "wait_converged", lambda *a, **k: None)
    rs._back(None, "shop", 10, lambda _m: None, probe_failed=True)  # type: ignore[arg-type]
    assert calls == [("service", "rollback", "--detach", "shop_app")]


def test_several_nodes_need_a_registry_before_anything_is_built(shop: Project,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSwarm(monkeypatch, nodes=2)
    with pytest.raises(UsageError, match="this swarm has 2 nodes") as refused:
        rs.deploy(None, shop, "shop")  # type: ignore[arg-type]
    assert "--registry" in (refused.value.hint or "")
    assert fake.built == [] and fake.updates() == [] and not rs.load_history(shop, "shop").path.exists()


def test_a_swarm_rollback_updates_to_the_earlier_release(shop: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeSwarm(monkeypatch)
    first = rs.deploy(None, shop, "shop").release  # type: ignore[arg-type]
    outcome = rs.rollback(None, shop, "shop")  # type: ignore[arg-type]
    history = rs.load_history(shop, "shop")
    adopted = history.releases[0]
    assert outcome.release.kind == "rollback" and outcome.previous == first.id
    assert fake.updates()[-1][fake.updates()[-1].index("--image") + 1] == adopted.image
    assert history.current == adopted.id and history.get(first.id).outcome == "rolled-back"  # type: ignore[union-attr]


def test_with_data_is_for_one_host(shop: Project) -> None:
    with pytest.raises(UsageError, match="--with-data is for one host") as refused:
        rs.rollback(None, shop, "shop", with_data=True)  # type: ignore[arg-type]
    assert "montero restore postgres --stack shop" in (refused.value.hint or "")


# ------------------------------------------------------------------ the commands


def test_releases_of_a_stack_lists_that_stacks_history(project: Path, cli: Callable[..., Result]) -> None:
    shop = Project(project, "x", project / ".env", ())
    history = rs.load_history(shop, "edge")
    history.releases.append(rel.Release(id="r-1", image="x-app:r-1", digest=IMAGE_ID, commit=None,
                                        created_at="2026-12-02T20:00:00Z", by="me@here", outcome="ok"))
    history.current = "r-1"
    rel.save_history(history)
    out = json.loads(cli("releases", "--stack", "edge", "--json").stdout)
    assert out["target"] == {"kind": "swarm", "stack": "edge"} and out["current"] == "r-1"
    table = cli("releases", "--stack", "edge", env={"COLUMNS": "200"}).output
    assert "releases of stack edge on this swarm" in table and "r-1" in table


def test_host_only_options_are_refused_on_the_other_target(project: Path, engine: Any,
                                                           cli: Callable[..., Result]) -> None:
    from tests.unit.conftest import container

    engine.set(container("app"), container("redis"), container("nginx"))
    result = cli("deploy", "--stack", "shop", "--allow-breaking", "--yes")
    assert result.exit_code == 2
    assert "--allow-breaking is for one host: a swarm has no migration gate to override" in result.output
    result = cli("deploy", "--registry", "10.0.0.1:5000", "--yes")
    assert result.exit_code == 2 and "--registry is for a swarm stack" in result.output
