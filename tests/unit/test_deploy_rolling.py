"""Rolling restart and scale-down behind nginx: the engine and the docker client faked at the boundary."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from montero_ops.errors import StackNotRunning
from montero_ops.project import Project
from montero_ops.services import rolling

NET = "proj_default"


class FakeEngine:
    def __init__(self) -> None:
        self.containers: dict[str, dict[str, Any]] = {}
        self.tags: dict[str, str] = {}

    def add(self, cid: str, service: str, created: int, ip: str, health: str = "healthy") -> None:
        self.containers[cid] = {"Id": cid, "Names": [f"/proj-{service}-{cid}"], "Created": created,
                                "Labels": {"com.docker.compose.service": service}, "ip": ip, "health": health}

    def project_containers(self, project: str, all: bool = True) -> list[dict[str, Any]]:
        return list(self.containers.values())

    def logs_tail(self, cid: str, lines: int = 50) -> str:
        return f"log of {cid}\n"

    def inspect(self, cid: str) -> dict[str, Any]:
        c = self.containers[cid]
        return {"State": {"Running": True, "Health": {"Status": c["health"]}}, "Image": c.get("image", ""),
                "Config": {"Image": "montero-app:latest"}, "RestartCount": c.get("restarts", 0),
                "NetworkSettings": {"Networks": {NET: {"IPAddress": c["ip"]}}}}

    def image_inspect(self, name: str) -> dict[str, Any] | None:
        return {"Id": self.tags.get(name, "")}


@pytest.fixture()
def project(tmp_path: Path) -> Project:
    return Project(tmp_path, "proj", tmp_path / ".env", (tmp_path / "docker" / "compose.yml",))


def test_scale_down_pins_nginx_to_the_keepers_then_removes_the_newest(project: Project,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rolling, "PIN_SETTLE_S", 0)
    engine = FakeEngine()
    engine.add("n1", "nginx", 1, "10.0.0.9")
    for i, cid in enumerate(["a1", "a2", "a3"]):
        engine.add(cid, "app", 10 + i, f"10.0.0.{i + 1}")
    client = mock.MagicMock()
    calls: list[Any] = []
    client.container.execute.side_effect = lambda cid, cmd: calls.append(("exec", cid, cmd))
    client.container.stop.side_effect = lambda cid, time: calls.append(("stop", cid))
    client.container.remove.side_effect = lambda cid, force: calls.append(("rm", cid))
    removed = rolling.scale_down(client, project, "app", 1, engine=engine)  # type: ignore[arg-type]
    assert removed == ["proj-app-a2", "proj-app-a3"]
    assert calls == [
        ("exec", "n1", ["sh", "/usr/local/bin/montero-nginx", "pin", "10.0.0.1:5000"]),
        ("stop", "a2"), ("rm", "a2"), ("stop", "a3"), ("rm", "a3"),
        ("exec", "n1", ["sh", "/usr/local/bin/montero-nginx", "unpin"]),
    ]


def test_scale_down_without_nginx_leaves_it_to_compose(project: Project) -> None:
    engine = FakeEngine()
    engine.add("a1", "app", 1, "10.0.0.1")
    engine.add("a2", "app", 2, "10.0.0.2")
    client = mock.MagicMock()
    assert rolling.scale_down(client, project, "app", 1, engine=engine) == []  # type: ignore[arg-type]
    client.container.stop.assert_not_called()


def test_unpin_even_when_the_stop_fails(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rolling, "PIN_SETTLE_S", 0)
    engine = FakeEngine()
    engine.add("n1", "nginx", 1, "10.0.0.9")
    engine.add("a1", "app", 2, "10.0.0.1")
    engine.add("a2", "app", 3, "10.0.0.2")
    client = mock.MagicMock()
    client.container.stop.side_effect = RuntimeError("boom")
    with pytest.raises(RuntimeError):
        rolling.scale_down(client, project, "app", 1, engine=engine)  # type: ignore[arg-type]
    assert client.container.execute.call_args.args[1][-1] == "unpin"


def test_rolling_restart_needs_running_replicas(project: Project) -> None:
    with pytest.raises(StackNotRunning):
        rolling.rolling_restart(mock.MagicMock(), project, engine=FakeEngine())  # type: ignore[arg-type]


def test_a_new_replica_that_is_not_healthy_is_removed_and_stops_nothing(project: Project) -> None:
    engine = FakeEngine()
    engine.add("a1", "app", 1, "10.0.0.1")
    client = mock.MagicMock()
    client.compose.up.side_effect = lambda **kw: engine.add("a2", "app", 2, "10.0.0.2", health="unhealthy")
    with pytest.raises(Exception, match="not healthy.*undone"):
        rolling.rolling_restart(client, project, engine=engine, timeout=5)  # type: ignore[arg-type]
    client.container.stop.assert_not_called()
    client.container.remove.assert_called_once_with("a2", force=True)
    assert client.compose.up.call_args.kwargs == {"services": ["app"], "scales": {"app": 2}, "recreate": False,
                                                  "dependencies": False, "detach": True, "no_build": True,
                                                  "quiet": True}


def test_a_failed_step_keeps_nginx_off_the_new_replica_and_restores_the_image_tag(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """A release that crash-loops: nginx is pinned to the old replicas before the new one starts,
    the new one is removed, `latest` points back at the old image, nginx unpinned last."""
    monkeypatch.setattr(rolling, "PIN_SETTLE_S", 0)
    engine = FakeEngine()
    engine.tags = {"montero-app:latest": "sha256:broken"}
    engine.add("n1", "nginx", 1, "10.0.0.9")
    engine.add("a1", "app", 10, "10.0.0.1")
    engine.add("a2", "app", 11, "10.0.0.2")
    for cid in ("a1", "a2"):
        engine.containers[cid]["image"] = "sha256:good"
    client = mock.MagicMock()
    calls: list[Any] = []
    client.container.execute.side_effect = lambda cid, cmd: calls.append(("exec", cid, cmd[2:]))

    def up(**kw: Any) -> None:
        calls.append(("up",))
        engine.add("a3", "app", 12, "10.0.0.3", health="starting")
        engine.containers["a3"]["restarts"] = 3  # crash-looping under its restart policy

    client.compose.up.side_effect = up
    client.container.remove.side_effect = lambda cid, force: calls.append(("rm", cid))
    client.image.tag.side_effect = lambda src, ref: calls.append(("tag", src, ref))
    with pytest.raises(Exception, match="crash-looping"):
        rolling.rolling_restart(client, project, engine=engine, timeout=5)  # type: ignore[arg-type]
    assert calls == [
        ("exec", "n1", ["pin", "10.0.0.1:5000", "10.0.0.2:5000"]),
        ("up",),
        ("rm", "a3"),
        ("tag", "sha256:good", "montero-app:latest"),
        ("exec", "n1", ["unpin"]),
    ]
    client.container.stop.assert_not_called()


def test_a_failed_step_carries_the_replicas_evidence(project: Project) -> None:
    """Issue 14.4: the failing replica's last log lines and health output are read before it is removed."""
    engine = FakeEngine()
    engine.add("a1", "app", 1, "10.0.0.1")
    client = mock.MagicMock()
    client.compose.up.side_effect = lambda **kw: engine.add("a2", "app", 2, "10.0.0.2", health="unhealthy")
    with pytest.raises(rolling.ReplicaFailed) as failed:
        rolling.rolling_restart(client, project, engine=engine, timeout=5)  # type: ignore[arg-type]
    assert failed.value.container_id == "a2" and failed.value.name == "proj-app-a2"
    assert failed.value.logs == ["log of a2"]
    assert "undone" in failed.value.message


def test_only_replaces_the_named_replicas_and_check_runs_after_each_step(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rolling, "PIN_SETTLE_S", 0)
    engine = FakeEngine()
    for i, cid in enumerate(["a1", "a2", "a3"]):
        engine.add(cid, "app", 10 + i, f"10.0.0.{i + 1}")
    client = mock.MagicMock()
    fresh = iter(["b1", "b2"])
    client.compose.up.side_effect = lambda **kw: engine.add(next(fresh), "app", 20, "10.0.0.7")
    client.container.remove.side_effect = lambda cid, force: engine.containers.pop(cid)
    checks: list[set[str]] = []
    result = rolling.rolling_restart(client, project, engine=engine, dns_grace=0,  # type: ignore[arg-type]
                                     only={"a1", "a3"}, check=lambda: checks.append(set(engine.containers)))
    assert result.replaced == ["proj-app-a1", "proj-app-a3"]
    assert set(engine.containers) == {"a2", "b1", "b2"}
    # Once the replacement is healthy, and again once the old replica is gone.
    assert checks == [{"a1", "a2", "a3", "b1"}, {"a2", "a3", "b1"}, {"a2", "a3", "b1", "b2"}, {"a2", "b1", "b2"}]
    assert client.compose.up.call_args.kwargs["scales"] == {"app": 4}  # the full count + 1, not len(only) + 1


def test_a_check_that_fails_while_the_replacement_is_pinned_out_undoes_the_step(project: Project) -> None:
    engine = FakeEngine()
    engine.add("a1", "app", 1, "10.0.0.1")
    client = mock.MagicMock()
    client.compose.up.side_effect = lambda **kw: engine.add("a2", "app", 2, "10.0.0.2")

    def check() -> None:
        from montero_ops.errors import CommandFailed

        raise CommandFailed("the probe saw HTTP 502")

    with pytest.raises(rolling.ReplicaFailed, match="HTTP 502; the step was undone"):
        rolling.rolling_restart(client, project, engine=engine, dns_grace=0, check=check)  # type: ignore[arg-type]
    client.container.remove.assert_called_once_with("a2", force=True)
    client.container.stop.assert_not_called()


def test_a_step_behind_nginx_moves_it_to_the_new_replica_in_one_reload(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """pin(serving) -> start -> healthy -> pin(every replica but the old one, the new one included)
    -> stop -> unpin: no DNS wait, three reloads per step (each reload closes idle keep-alive connections)."""
    monkeypatch.setattr(rolling, "PIN_SETTLE_S", 0)
    slept: list[float] = []
    monkeypatch.setattr(rolling.time, "sleep", slept.append)
    engine = FakeEngine()
    engine.add("n1", "nginx", 1, "10.0.0.9")
    engine.add("a1", "app", 10, "10.0.0.1")
    engine.add("a2", "app", 11, "10.0.0.2")
    client = mock.MagicMock()
    calls: list[Any] = []
    client.container.execute.side_effect = lambda cid, cmd: calls.append(cmd[2:])
    client.compose.up.side_effect = lambda **kw: (calls.append(["up"]), engine.add("b1", "app", 20, "10.0.0.3"))
    client.container.stop.side_effect = lambda cid, time: calls.append(["stop", cid])
    client.container.remove.side_effect = lambda cid, force: (calls.append(["rm", cid]), engine.containers.pop(cid))
    rolling.rolling_restart(client, project, engine=engine, only={"a1"})  # type: ignore[arg-type]
    assert calls == [["pin", "10.0.0.1:5000", "10.0.0.2:5000"], ["up"], ["pin", "10.0.0.2:5000", "10.0.0.3:5000"],
                     ["stop", "a1"], ["rm", "a1"], ["unpin"]]
    assert sum(slept) == 0  # only the (zeroed) pin settles: no DNS grace behind nginx


def test_nginx_stays_pinned_between_steps_and_unpins_once_at_the_end(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two replicas: N + 2 = 4 reloads, not 4 N = 8 (each one closes idle keep-alive connections)."""
    monkeypatch.setattr(rolling, "PIN_SETTLE_S", 0)
    engine = FakeEngine()
    engine.add("n1", "nginx", 1, "10.0.0.9")
    engine.add("a1", "app", 10, "10.0.0.1")
    engine.add("a2", "app", 11, "10.0.0.2")
    client = mock.MagicMock()
    calls: list[Any] = []
    fresh = iter([("b1", "10.0.0.3"), ("b2", "10.0.0.4")])

    def up(**kw: Any) -> None:
        cid, ip = next(fresh)
        calls.append(["up"])
        engine.add(cid, "app", 20, ip)

    client.container.execute.side_effect = lambda cid, cmd: calls.append(cmd[2:])
    client.compose.up.side_effect = up
    client.container.stop.side_effect = lambda cid, time: calls.append(["stop", cid])
    client.container.remove.side_effect = lambda cid, force: (calls.append(["rm", cid]), engine.containers.pop(cid))
    rolling.rolling_restart(client, project, engine=engine)  # type: ignore[arg-type]
    assert calls == [["pin", "10.0.0.1:5000", "10.0.0.2:5000"], ["up"], ["pin", "10.0.0.2:5000", "10.0.0.3:5000"],
                     ["stop", "a1"], ["rm", "a1"],
                     ["up"], ["pin", "10.0.0.3:5000", "10.0.0.4:5000"], ["stop", "a2"], ["rm", "a2"], ["unpin"]]
