"""ports.* with real listening sockets; disk.* on real paths with thresholds moved around them."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_helpers import DoctorEngine, make_ctx

from montero_ops.services.doctor import disk
from montero_ops.services.doctor.ports import check_ports, parse_ports


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port held by this very process, like a stray dev server on 5000."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield int(s.getsockname()[1])
    s.close()


def test_parse_ports() -> None:
    assert parse_ports("5000-5002") == [5000, 5001, 5002]
    assert parse_ports("127.0.0.1:8080") == [8080]


def test_port_free(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("MONTERO_APP_PORTS", f"{port}-{port + 1}")
    [finding] = check_ports(make_ctx(root))
    assert finding.status.value == "pass"


def test_port_taken_by_process_names_pid_and_program(
    root: Path, held_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONTERO_APP_PORTS", f"{held_port}-{held_port + 5}")
    [finding] = check_ports(make_ctx(root))
    assert finding.status.value == "fail"
    assert f"port {held_port}" in finding.message
    assert f"process {os.getpid()}" in finding.message and "python" in finding.message
    assert finding.fix.startswith(f"kill {os.getpid()}")
    assert "MONTERO_APP_PORTS=" in finding.fix


def test_port_later_in_range_taken_warns(root: Path, held_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTERO_APP_PORTS", f"{held_port - 1}-{held_port}")
    [finding] = check_ports(make_ctx(root))
    assert finding.status.value == "warn"
    assert "scaling" in finding.message


def test_port_taken_by_another_projects_container(
    root: Path, engine: DoctorEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    monkeypatch.setenv("MONTERO_APP_PORTS", str(port))
    engine.published = [
        {
            "Names": ["/other-web-1"],
            "Labels": {"com.docker.compose.project": "other"},
            "Ports": [{"PrivatePort": 80, "PublicPort": port, "Type": "tcp"}],
        }
    ]
    [finding] = check_ports(make_ctx(root, engine))
    assert finding.status.value == "fail"
    assert "container other-web-1 of project other" in finding.message
    assert finding.fix.startswith("docker stop other-web-1")


def test_port_used_by_our_own_stack_passes(root: Path, engine: DoctorEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _free_port()
    monkeypatch.setenv("MONTERO_APP_PORTS", str(port))
    engine.published = [
        {
            "Names": ["/shop-app-1"],
            "Labels": {"com.docker.compose.project": "shop"},
            "Ports": [{"PrivatePort": 5000, "PublicPort": port, "Type": "tcp"}],
        }
    ]
    [finding] = check_ports(make_ctx(root, engine))
    assert finding.status.value == "pass" and "used by this stack" in finding.message


def test_production_adds_http_and_https(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTERO_HTTP_PORT", str(_free_port()))
    monkeypatch.setenv("MONTERO_HTTPS_PORT", str(_free_port()))
    ids = [f.id for f in check_ports(make_ctx(root, production=True))]
    assert ids == ["ports.app", "ports.http", "ports.https"]


def test_production_app_without_published_port(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTERO_HTTP_PORT", str(_free_port()))
    monkeypatch.setenv("MONTERO_HTTPS_PORT", str(_free_port()))
    ctx = make_ctx(root, production=True, compose={"services": {"app": {"ports": []}, "nginx": {"ports": [{}]}}})
    found = {f.id: f for f in check_ports(ctx)}
    assert list(found) == ["ports.app", "ports.http", "ports.https"]
    assert found["ports.app"].status.value == "pass" and "no host port" in found["ports.app"].message


def test_bad_port_setting_fails(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTERO_APP_PORTS", "five-thousand")
    assert check_ports(make_ctx(root))[0].status.value == "fail"


# -- disk ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail_free", "warn_free", "status"), [(0, 0, "pass"), (0, 1 << 60, "warn"), (1 << 60, 1 << 60, "fail")]
)
def test_disk_thresholds(
    root: Path, engine: DoctorEngine, monkeypatch: pytest.MonkeyPatch, fail_free: int, warn_free: int, status: str
) -> None:
    monkeypatch.setattr(disk, "FAIL_FREE", fail_free)
    monkeypatch.setattr(disk, "FAIL_PCT", 0.0)
    monkeypatch.setattr(disk, "WARN_FREE", warn_free)
    monkeypatch.setattr(disk, "WARN_PCT", 0.0)
    engine.root_dir = str(root)
    found = {f.id: f for f in disk.check_disk(make_ctx(root, engine))}
    assert found["disk.docker"].status.value == status
    assert found["disk.project"].status.value == status
    if status != "pass":
        assert "docker builder prune" in found["disk.docker"].fix
        assert "montero backups prune" in found["disk.project"].fix


def test_disk_reclaimable_warns_with_prune_and_safe_repair(
    root: Path, engine: DoctorEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.df = {
        "Images": [
            {"Size": 3 << 30, "SharedSize": 0, "Containers": 0},
            {"Size": 5 << 30, "SharedSize": 0, "Containers": 1},
        ],
        "Containers": [{"SizeRw": 1 << 20, "State": "exited"}],
        "Volumes": [{"UsageData": {"Size": 1 << 20, "RefCount": 0}}],
        "BuildCache": [{"Size": 1 << 30, "InUse": False}, {"Size": 1 << 30, "InUse": True}],
    }
    found = {f.id: f for f in disk.check_disk(make_ctx(root, engine))}
    reclaim = found["disk.reclaimable"]
    assert reclaim.status.value == "warn"
    assert "images 3.0 GiB" in reclaim.message and "build cache 1.0 GiB" in reclaim.message
    assert reclaim.repair is not None and reclaim.repair.safe
    calls: list[list[str]] = []
    monkeypatch.setattr(
        disk, "run_cmd", lambda cmd, timeout: calls.append(cmd) or (0, "Total reclaimed space: 1GB\n", "")
    )
    assert "reclaimed" in reclaim.repair.apply()
    assert calls == [["docker", "builder", "prune", "-f"]]


def test_disk_without_docker_skips_docker_parts(root: Path) -> None:
    found = {f.id: f.status.value for f in disk.check_disk(make_ctx(root))}
    assert found["disk.docker"] == "skip" and found["disk.reclaimable"] == "skip"
    assert found["disk.project"] in ("pass", "warn", "fail")
