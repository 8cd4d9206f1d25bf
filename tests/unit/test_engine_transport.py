"""The Engine API transports: the fast path (one HTTP/1.0 exchange over a unix socket, read to EOF)
and the docker SDK client (dockerapi), which must answer failures the same way.

A real unix-socket server stands in for dockerd here; tests/e2e talk to the real one.
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from montero_ops.dockerapi import DockerAPI
from montero_ops.engine import Engine, _unchunk
from montero_ops.errors import DockerUnavailable, EngineError, ExitCode


def serve_once(path: Path, answer: bytes) -> list[bytes]:
    """Accept one connection on `path`, record the request, send `answer`, close."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    seen: list[bytes] = []

    def run() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            head, _, rest = data.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            while len(rest) < length:
                rest += conn.recv(4096)
            seen.append(head + b"\r\n\r\n" + rest)
            conn.sendall(answer)
        server.close()

    threading.Thread(target=run, daemon=True).start()
    return seen


def test_get_sends_http_1_0_and_reads_the_body_to_eof(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    seen = serve_once(sock, b'HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n[{"Id": "abc"}]')
    assert Engine(str(sock)).get("/containers/json", all=1) == [{"Id": "abc"}]
    assert seen[0].startswith(b"GET /v1.41/containers/json?all=1 HTTP/1.0\r\n")


def test_a_chunked_answer_is_decoded(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    serve_once(sock, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n[1, \r\n2\r\n2]\r\n0\r\n\r\n")
    assert Engine(str(sock)).get("/x") == [1, 2]
    assert _unchunk(b"3;ext=1\r\nabc\r\n0\r\n\r\n") == b"abc"


@pytest.mark.parametrize("client", [Engine, DockerAPI])
def test_an_api_error_carries_the_engine_message(tmp_path: Path, client: type[Engine | DockerAPI]) -> None:
    sock = tmp_path / "d.sock"
    serve_once(sock, b'HTTP/1.0 404 Not Found\r\n\r\n{"message": "No such container: nope"}')
    with pytest.raises(EngineError, match="404: No such container: nope") as caught:
        client(str(sock)).inspect("nope")
    # Issue 12.10: the daemon answered, so this is not "Docker unavailable" (exit 3).
    assert not isinstance(caught.value, DockerUnavailable)
    assert (caught.value.status, caught.value.exit_code) == (404, ExitCode.FAILED)


def test_a_missing_image_is_none_other_errors_raise(tmp_path: Path) -> None:
    sock = tmp_path / "d.sock"
    serve_once(sock, b'HTTP/1.0 404 Not Found\r\n\r\n{"message": "No such image: x"}')
    assert DockerAPI(str(sock)).image_inspect("x") is None
    sock2 = tmp_path / "e.sock"
    serve_once(sock2, b'HTTP/1.0 500 Internal Server Error\r\n\r\n{"message": "the 404 store broke"}')
    with pytest.raises(EngineError) as caught:
        DockerAPI(str(sock2)).image_inspect("x")
    assert caught.value.status == 500


@pytest.mark.parametrize("client", [Engine, DockerAPI])
def test_a_missing_socket_says_the_daemon_is_not_running(tmp_path: Path, client: type[Engine | DockerAPI]) -> None:
    with pytest.raises(DockerUnavailable, match="does not exist: the daemon is not running"):
        client(str(tmp_path / "absent.sock")).ping()


@pytest.mark.parametrize("client", [Engine, DockerAPI])
def test_garbage_is_reported_as_a_daemon_that_does_not_answer(tmp_path: Path, client: type[Engine | DockerAPI]) -> None:
    sock = tmp_path / "d.sock"
    serve_once(sock, b"not http at all")
    with pytest.raises(DockerUnavailable, match="not answering"):
        client(str(sock)).ping()


def test_a_crashing_doctor_check_hints_a_command_that_exists(cli, project: Path) -> None:
    """Issue 12.12: the hint was `montero doctor --debug`, which fails: --debug is a root option."""
    from concurrent.futures import Future

    from montero_ops.services.doctor.runner import _bounded

    crashed: Future[list[object]] = Future()
    crashed.set_exception(ValueError("boom"))
    finding = _bounded(crashed, "x.check", 1.0, docker=False)  # type: ignore[arg-type]
    assert not isinstance(finding, list)
    assert finding.fix == "montero --debug doctor"
    assert cli("--debug", "doctor", "--help").exit_code == 0
    failed: Future[list[object]] = Future()
    failed.set_exception(EngineError(409, "container is restarting"))
    finding = _bounded(failed, "x.check", 1.0, docker=True)  # type: ignore[arg-type]
    assert not isinstance(finding, list)
    assert (finding.status.value, finding.message) == ("fail", "Docker Engine API error 409: container is restarting")
