"""Issue 14 point 8 on the real engine: `montero update` pulls the base image again from a registry,
builds the release on it, gates it on Trivy when Trivy is there, and deploys it like `deploy`.

The registry is a real one (Debian's docker-registry) on a free loopback port, started by the
fixture; the test pushes a "refreshed" base there under the tag the project uses while the local
copy of that tag is still the old base, so only a real pull can make the release inherit the
refreshed base's label. Nothing shared is rebuilt (the machine's montero-base stays as it is).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import IN_CI, free_port_block, wait_http

pytestmark = pytest.mark.lane2  # a build and a deploy: beside the other release tests


def docker(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _shown(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-5000:]}"


@pytest.fixture
def registry(tmp_path: Path, docker_engine: str) -> Iterator[str]:
    """A registry on 127.0.0.1:<free port>, stopped and removed afterwards whatever happened."""
    if shutil.which("docker-registry") is None:
        message = "docker-registry is not installed (scripts/setup.sh installs it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    address = f"127.0.0.1:{free_port_block(1)}"
    folder = tmp_path / "registry"
    (folder / "data").mkdir(parents=True)
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {folder}/data\n"
                      f"http:\n  addr: {address}\n")
    log = (folder / "registry.log").open("w")
    server = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(f"the registry did not answer: {(folder / 'registry.log').read_text()}")
                time.sleep(0.25)
        yield address
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
        log.close()


def test_update_pulls_the_base_builds_on_it_and_deploys(registry: str, stack_project: Any, stack_env: dict[str, str],
                                                       app_image: str) -> None:
    p = stack_project
    marker = uuid.uuid4().hex[:12]
    base = stack_env["MONTERO_PYTHON_IMAGE"]
    reference = f"{registry}/montero-update-base:{marker}"
    original = docker("image", "inspect", "--format", "{{.Id}}", app_image).stdout.strip()
    history_file = p.root / ".montero" / "releases.json"
    try:
        # The registry holds a refreshed base; this engine's copy of the same tag is the old one.
        built = subprocess.run(["docker", "build", "-q", "-t", reference, "-"], capture_output=True, text=True,
                               input=f"FROM {base}\nLABEL org.montero.test.base=refreshed-{marker}\n", timeout=300,
                               check=False)
        assert built.returncode == 0, built.stderr
        refreshed = built.stdout.strip()
        pushed = docker("push", "-q", reference)
        assert pushed.returncode == 0, pushed.stderr
        assert docker("tag", base, reference).returncode == 0
        assert docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip() != refreshed

        env = {"MONTERO_PYTHON_IMAGE": reference}
        p.write_env(SECRET_KEY=secrets.token_hex(32), MONTERO_PYTHON_IMAGE=reference)
        up = p.run_montero("up", timeout=600, env=env)
        assert up.returncode == 0, _shown(up)
        before = set(p.compose("ps", "-q", "app").stdout.split())

        refused = p.run_montero("update", env=env)  # no nginx: a restart with a short gap, so it asks
        assert refused.returncode == 2 and "refusing to update with a short gap" in refused.stderr, _shown(refused)
        assert not history_file.exists()

        done = p.run_montero("update", "--yes", "--json", timeout=1200, env=env)
        assert done.returncode == 0, _shown(done)
        out = json.loads(done.stdout)
        release = out["release"]
        assert f"pulling the base image {reference}" in done.stderr
        assert f"base image {reference} pulled again" in out["notes"]
        if shutil.which("trivy") is None:
            assert any(n.startswith("Trivy is not installed: the new release was not scanned") for n in out["notes"])
        else:
            assert f"Trivy found no HIGH or CRITICAL vulnerability in {release['image']}" in out["notes"]
        # The pull happened: the local tag is the registry's image, and the release is built on it.
        assert docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip() == refreshed
        labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}",
                                   release["image"]).stdout)
        assert labels.get("org.montero.test.base") == f"refreshed-{marker}", labels
        # … and deployed like `montero deploy`: recorded, current, the replica runs it and answers.
        assert release["kind"] == "deploy" and release["outcome"] == "ok"
        assert release["receipt"]["replicas_replaced"] == 1
        after = set(p.compose("ps", "-q", "app").stdout.split())
        assert after and not (before & after)
        running = docker("inspect", "--format", "{{.Image}}", *after).stdout.split()
        assert set(running) == {release["digest"]}
        # The replacement is container #2 (a rolling switch): ask docker for its published port.
        bound = docker("port", next(iter(after)), "5000/tcp").stdout.split()[0]
        status, body = wait_http(f"http://127.0.0.1:{bound.rsplit(':', 1)[1]}/health", timeout=60)
        assert status == 200, body
        history = json.loads(p.run_montero("releases", "--json").stdout)
        assert history["current"] == release["id"]
        assert [r["kind"] for r in history["releases"]] == ["deploy", "adopted"]
    finally:
        # The release images can go only once no container runs them: the stack goes first.
        p.compose("down", "-v", "--remove-orphans", "--timeout", "5", timeout=180)
        docker("tag", original, app_image)  # the session's app image tag, as it was
        if history_file.is_file():
            for tag in sorted({r["image"] for r in json.loads(history_file.read_text())["releases"]} - {app_image}):
                docker("rmi", tag)
        docker("rmi", reference)
