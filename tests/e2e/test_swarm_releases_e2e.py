"""Issue 14 point 7 on a real single-node swarm: `montero deploy`, `releases` and `rollback` mean the
same on a swarm stack as on one host. A release is a `docker service update` of the stack's app
service (start-first, the swarm rolls a failing update back), recorded with its receipt.

Steps on one stack, each a release built from the project copy's backend/ changed by the test,
while a keep-alive client sends `GET /health` through nginx's host-mode port and counts every
response:
  1. `montero swarm deploy` (the stack as it was), then `montero deploy --stack`: 0 failed, both
     releases answered during the switch, every task runs the release image afterwards;
  2. a release that exits at import: the swarm rolls it back, exit 1 with the cause, 0 failed;
  3. `montero rollback --stack`: back on the image that ran first, 0 failed;
  and `montero releases` (the stack found from MONTERO_STACK, no --stack) lists it all.

Not in the lane2 process: it makes this engine a swarm like tests/e2e/test_swarm_e2e.py, and two
tests doing that at once would refuse each other.
"""

from __future__ import annotations

import collections
import http.client
import json
import secrets
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.test_releases_e2e import RELEASE_HEADER, Release
from tests.e2e.test_swarm_e2e import docker, swarm  # noqa: F401  (the fixture: init, always leave)

MIN_REQUESTS = 150
LOAD_BOUND_S = 900


def _shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}"


@dataclass
class HealthLoad:
    """One persistent HTTP connection through nginx: GET /health until stopped. A request that
    fails on a reused connection before any answer (nginx closed it while idle) is retried once
    on a fresh one and counted apart; any other error or a non-200 is a failure."""

    port: int
    count: int = 0
    failures: list[tuple[int, Any]] = field(default_factory=list)
    keepalive_closed: int = 0
    releases: collections.Counter[str] = field(default_factory=collections.Counter)
    stop: threading.Event = field(default_factory=threading.Event)
    conn: http.client.HTTPConnection | None = None
    last_old: float | None = None
    first_new: float | None = None

    def _get(self) -> tuple[int, dict[str, str]]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.conn.request("GET", "/health", headers={"User-Agent": "montero-e2e-load"})
        response = self.conn.getresponse()
        response.read()
        headers = {k.lower(): v for k, v in response.getheaders()}
        if headers.get("connection", "").lower() == "close":
            self._drop()
        return response.status, headers

    def _drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def one(self) -> None:
        reused = self.conn is not None and self.conn.sock is not None
        try:
            status, headers = self._get()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._drop()
            if not reused:
                raise
            self.keepalive_closed += 1
            status, headers = self._get()
        release = headers.get("x-release", "old")
        self.releases[release] += 1
        if release == "old":
            self.last_old = time.monotonic()
        elif self.first_new is None:
            self.first_new = time.monotonic()
        if status != 200:
            self.failures.append((self.count, status))

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_BOUND_S
        while (self.count < MIN_REQUESTS or not self.stop.is_set()) and time.monotonic() < deadline:
            try:
                self.one()
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                self.failures.append((self.count, f"{type(exc).__name__}: {exc}"))
            self.count += 1
            time.sleep(0.02)
        self._drop()

    def during(self, action: Any) -> Any:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            return action()
        finally:
            self.stop.set()
            thread.join(LOAD_BOUND_S + 60)


def service_image(name: str) -> str:
    done = docker("service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", name)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def task_images(name: str) -> set[str]:
    done = docker("service", "ps", "--filter", "desired-state=running", "--format", "{{.Image}} {{.CurrentState}}",
                  name)
    return {line.split()[0] for line in done.stdout.splitlines() if " Running " in f" {line} "}


@pytest.fixture
def swarm_stack(swarm: None, stack_project: Any, app_image: str) -> Iterator[tuple[Any, str]]:  # noqa: F811
    p = stack_project
    stack = f"mtr{uuid.uuid4().hex[:8]}"
    p.write_env(SECRET_KEY=secrets.token_hex(32), DEFAULT_RATE_LIMIT="100000 per minute",
                MONTERO_APP_UPDATE_MONITOR="5s", MONTERO_KEEP_RELEASES="3")
    original = docker("image", "inspect", "--format", "{{.Id}}", app_image).stdout.strip()
    p.release = Release(p.root)
    try:
        yield p, stack
    finally:
        p.release.reset()
        docker("stack", "rm", stack)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and docker(
                "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.strip():
            time.sleep(2)
        volumes = docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()
        if volumes:
            docker("volume", "rm", "-f", *volumes)
        # The session's app image tag goes back to what it was; every release image goes.
        docker("tag", original, app_image)
        path = p.root / ".montero" / f"releases-swarm-{stack}.json"
        if path.is_file():
            for tag in sorted({r["image"] for r in json.loads(path.read_text())["releases"]} - {app_image}):
                docker("rmi", tag)


def test_deploy_releases_rollback_on_a_swarm_stack(swarm_stack: tuple[Any, str], app_image: str) -> None:
    p, stack = swarm_stack
    app = f"{stack}_app"
    done = p.run_montero("swarm", "deploy", "--stack", stack, "--timeout", "480", timeout=600)
    assert done.returncode == 0, _shown(done)
    status, body = p.wait_http("/health", service="nginx", timeout=60)
    assert status == 200, body
    assert service_image(app) == app_image

    # 1. A code change: the release is a service update, start-first, under load.
    p.release.append("wsgi.py", RELEASE_HEADER)
    load = HealthLoad(p.http_port)
    done = load.during(lambda: p.run_montero("deploy", "--stack", stack, "--yes", "--json", timeout=1200))
    assert done.returncode == 0, _shown(done)
    out = json.loads(done.stdout)
    release, receipt = out["release"], out["release"]["receipt"]
    assert load.failures == [], load.failures[:10]
    assert load.count >= MIN_REQUESTS
    assert load.releases["old"] > 0 and load.releases["v2"] > 0, load.releases
    assert out["previous"].startswith("adopted-")
    assert service_image(app) == release["image"] and task_images(app) == {release["image"]}
    assert receipt["replicas_replaced"] == 2 and receipt["probes_failed"] == 0 and receipt["probes_sent"] > 10
    assert any("no migration gate on a swarm" in note for note in out["notes"]), out["notes"]
    assert "--update-order start-first" not in done.stderr  # progress speaks the user's words …
    assert "start-first" in done.stderr  # … and says how the swarm switches
    check = HealthLoad(p.http_port)
    check.stop.set()
    check.run()
    assert check.failures == [] and set(check.releases) == {"v2"}, check.releases
    print(f"\nswarm deploy: receipt {receipt}, load {load.count} requests, {len(load.failures)} failed, "
          f"{load.keepalive_closed} keep-alive closes retried")

    # 2. A release that exits at import: the swarm rolls the update back; montero says why.
    p.release.append("wsgi.py", '\nraise RuntimeError("broken release (montero e2e)")\n')
    load = HealthLoad(p.http_port)
    try:
        failed = load.during(lambda: p.run_montero("deploy", "--stack", stack, "--yes", "--timeout", "300",
                                                   timeout=1200))
    finally:
        p.release.reset()
    assert failed.returncode == 1, _shown(failed)
    assert f"failed and was rolled back to {release['id']}" in failed.stderr, failed.stderr
    assert "broken release (montero e2e)" in failed.stderr
    assert load.failures == [], load.failures[:10]
    assert set(load.releases) == {"v2"}, load.releases
    assert service_image(app) == release["image"]
    print(f"failed release rolled back by the swarm: load {load.count} requests, {len(load.failures)} failed")

    # releases: found from MONTERO_STACK (no --stack): the stack's own history.
    listed = p.run_montero("releases", "--json", env={"MONTERO_STACK": stack})
    assert listed.returncode == 0, _shown(listed)
    history = json.loads(listed.stdout)
    assert history["target"] == {"kind": "swarm", "stack": stack}, _shown(listed) + docker("service", "ls").stdout
    assert history["current"] == release["id"]
    kinds = [(r["kind"], r["outcome"]) for r in history["releases"]]
    assert kinds == [("deploy", "rolled-back"), ("deploy", "ok"), ("adopted", "ok")], kinds
    bad = history["releases"][0]
    assert "broken release (montero e2e)" in bad["reason"], bad
    assert bad["failure"]["returned_to"] == release["id"]

    # 3. rollback: back to what ran before montero's first release, 0 failed.
    load = HealthLoad(p.http_port)
    back = load.during(lambda: p.run_montero("rollback", "--stack", stack, "--yes", "--json", timeout=1200))
    assert back.returncode == 0, _shown(back)
    rolled = json.loads(back.stdout)["release"]
    assert load.failures == [], load.failures[:10]
    assert load.releases["v2"] > 0 and load.releases["old"] > 0, load.releases
    assert rolled["kind"] == "rollback" and rolled["receipt"]["replicas_replaced"] == 2
    adopted = history["releases"][2]
    assert service_image(app) == adopted["image"] and task_images(app) == {adopted["image"]}
    print(f"swarm rollback: receipt {rolled['receipt']}, load {load.count} requests, {len(load.failures)} failed, "
          f"{load.keepalive_closed} keep-alive closes retried")
    table = p.run_montero("releases", "--stack", stack, env={"COLUMNS": "250"})
    assert table.returncode == 0 and f"stack {stack}" in table.stdout and "replica(s) replaced" in table.stdout, \
        _shown(table)
