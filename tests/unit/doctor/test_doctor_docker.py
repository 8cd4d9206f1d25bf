"""docker.daemon, docker.version, compose.plugin: a real unix-socket server stands in for the daemon."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_helpers import DoctorEngine, make_ctx

from montero_ops.services.doctor import docker_checks
from montero_ops.services.doctor.docker_checks import check_compose, check_versions, connect


def _serve(path: Path, answer: bool) -> Iterator[None]:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(5)
    stop = threading.Event()
    held: list[socket.socket] = []

    def loop() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)  # a hung daemon accepts and never answers
            if answer:
                conn.recv(4096)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK")
                conn.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def sock_path(tmp_path: Path) -> Path:
    # AF_UNIX paths are limited to ~108 bytes: keep it short.
    path = Path(f"/tmp/doctor-{os.getpid()}-{tmp_path.name[-8:]}.sock")
    yield path
    path.unlink(missing_ok=True)


def test_daemon_answers(root: Path, sock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock_path}")
    ctx = make_ctx(root)
    for _ in _serve(sock_path, answer=True):
        finding = connect(ctx)
    assert finding.status.value == "pass"
    assert ctx.engine is not None


def test_daemon_socket_missing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/no-such-docker.sock")
    ctx = make_ctx(root)
    finding = connect(ctx)
    assert finding.status.value == "fail"
    assert "does not exist" in finding.message
    assert finding.fix.startswith("sudo systemctl start docker")
    assert ctx.engine is None


def test_daemon_hung_is_a_finding_not_a_hang(root: Path, sock_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock_path}")
    ctx = make_ctx(root)
    ctx.timeout = 0.5
    for _ in _serve(sock_path, answer=False):
        finding = connect(ctx)
    assert finding.status.value == "fail"
    assert "not answering" in finding.message
    assert "restart docker" in finding.fix


def test_daemon_permission_denied(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from montero_ops.errors import DockerUnavailable

    def denied(self: object) -> None:  # root ignores socket modes, so the engine's own error is raised
        raise DockerUnavailable(
            "permission denied on the Docker socket /var/run/docker.sock",
            hint="add your user to the docker group (`sudo usermod -aG docker $USER`, then log in again)",
        )

    monkeypatch.setattr("montero_ops.dockerapi.DockerAPI.ping", denied)
    finding = connect(make_ctx(root))
    assert finding.status.value == "fail"
    assert "usermod -aG docker" in finding.fix


def test_daemon_remote_host_warns(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2376")
    assert connect(make_ctx(root)).status.value == "warn"


def _client(version: str) -> object:
    return lambda cmd, timeout: (0, version + "\n", "")


@pytest.mark.parametrize(
    ("server", "client", "status"),
    [("20.10.24+dfsg1", "28.2.2", "pass"), ("20.10.24", "19.03.8", "warn"), ("19.03.13", "20.10.0", "fail")],
)
def test_versions(
    root: Path, engine: DoctorEngine, monkeypatch: pytest.MonkeyPatch, server: str, client: str, status: str
) -> None:
    engine.server_version = server
    monkeypatch.setattr(docker_checks, "run_cmd", _client(client))
    [finding] = check_versions(make_ctx(root, engine))
    assert finding.status.value == status
    if status != "pass":
        assert "20.10" in finding.message and "upgrade Docker" in finding.fix


def test_compose_plugin_present(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []
    monkeypatch.setattr(docker_checks, "run_cmd", lambda cmd, timeout: calls.append(cmd) or (0, "2.40.3\n", ""))
    [finding] = check_compose(make_ctx(root))
    assert calls == [["docker", "compose", "version", "--short"]]
    assert finding.status.value == "pass" and "2.40.3" in finding.message


def test_compose_plugin_missing(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        docker_checks, "run_cmd", lambda cmd, timeout: (1, "", "docker: 'compose' is not a docker command.")
    )
    [finding] = check_compose(make_ctx(root))
    assert finding.status.value == "fail"
    assert "cli-plugins" in finding.fix


def test_compose_plugin_too_old(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_checks, "run_cmd", _client("1.29.2"))
    assert check_compose(make_ctx(root))[0].status.value == "fail"


def test_compose_plugin_hangs(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(cmd: list[str], timeout: float) -> tuple[int, str, str]:
        raise subprocess.TimeoutExpired(cmd, timeout)

    monkeypatch.setattr(docker_checks, "run_cmd", hang)
    assert check_compose(make_ctx(root))[0].status.value == "warn"
