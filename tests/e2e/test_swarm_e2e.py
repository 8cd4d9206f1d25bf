"""Single-node Docker Swarm on a real engine: `montero deploy swarm` brings the stack up healthy,
a rolling update to a new image keeps serving, `deploy rollback` returns to the old image.

The test creates the swarm (`docker swarm init --advertise-addr 127.0.0.1`) and always leaves it;
an engine that is already part of a swarm is not touched (skip outside CI, failure in CI).
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}
LOAD_REQUESTS = 300


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def swarm(docker_engine: str) -> Iterator[None]:
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    if state != "inactive":
        message = f"this engine is already in a swarm ({state}); the test only uses swarms it creates"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    init = docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    assert init.returncode == 0, init.stderr
    try:
        yield
    finally:
        docker("swarm", "leave", "--force", timeout=180)


class Load(threading.Thread):
    """GET /health through nginx's host-mode port until stopped (at least LOAD_REQUESTS)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, threading.Event()
        self.served: collections.Counter[str] = collections.Counter()
        self.errors: list[Any] = []
        self.count = 0

    def run(self) -> None:
        deadline = time.monotonic() + 900
        while (self.count < LOAD_REQUESTS or not self.stop.is_set()) and time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                self.served[(resp.getheader("X-Served-By") or "?").split(",")[-1].strip()] += 1
                if resp.status != 200:
                    self.errors.append((self.count, resp.status))
            except OSError as exc:
                self.errors.append((self.count, str(exc)))
            self.count += 1

    def finish(self) -> None:
        self.stop.set()
        self.join(960)


def _status(project: Any, stack: str) -> dict[str, Any]:
    done = project.run_montero("deploy", "status", "--stack", stack, "--json")
    assert done.returncode == 0, done.stderr
    return {s["name"].removeprefix(f"{stack}_"): s for s in json.loads(done.stdout)["services"]}


def test_deploy_update_rollback_on_a_single_node_swarm(swarm: None, stack_project: Any, app_image: str) -> None:
    p = stack_project
    stack = f"mts{uuid.uuid4().hex[:8]}"
    new_image = f"{app_image}-swarm-v2"
    p.write_env(SECRET_KEY=secrets.token_hex(32), DEFAULT_RATE_LIMIT="100000 per minute")
    built = subprocess.run(["docker", "build", "-q", "-t", new_image, "-"], input=f"FROM {app_image}\n"
                           "LABEL montero.test=swarm-v2\n", capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    try:
        done = p.run_montero("deploy", "swarm", "--stack", stack, "--timeout", "480", timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        status, body = p.wait_http("/health", service="nginx", timeout=60)
        assert status == 200, body
        services = _status(p, stack)
        assert services["app"]["running"] == services["app"]["desired"] == 2
        assert services["app"]["image"] == app_image

        # Rolling, start-first update to a new image while traffic flows.
        load = Load(p.http_port)
        load.start()
        done = p.run_montero("deploy", "swarm", "--stack", stack, "--image", new_image, "--timeout", "480",
                             timeout=600)
        load.finish()
        assert done.returncode == 0, done.stdout + done.stderr
        assert load.errors == [], load.errors[:10]
        assert _status(p, stack)["app"]["image"] == new_image
        assert len([a for a in load.served if a.endswith(":5000")]) >= 3, dict(load.served)  # old and new tasks

        # Rollback returns to the old image, still serving.
        load = Load(p.http_port)
        load.start()
        done = p.run_montero("deploy", "rollback", "--stack", stack, "--timeout", "480", timeout=600)
        load.finish()
        assert done.returncode == 0, done.stdout + done.stderr
        assert load.errors == [], load.errors[:10]
        app = _status(p, stack)["app"]
        assert app["image"] == app_image and app["running"] == 2
    finally:
        docker("stack", "rm", stack)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and docker(
                "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.strip():
            time.sleep(2)
        volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()
        if volumes:
            docker("volume", "rm", "-f", *volumes)
        docker("image", "rm", new_image)
