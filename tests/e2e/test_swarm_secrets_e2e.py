"""Issue 21 point 7 on a real single-node swarm: the settings' secrets are swarm secrets (not in
`docker service inspect`), every service runs hardened, and an edited nginx file deploys as a new
config with a versioned name (swarm configs are immutable) while the old generations are pruned.

The test creates the swarm (`docker swarm init --advertise-addr 127.0.0.1`) and always leaves it;
an engine that is already part of a swarm is not touched (skip outside CI, failure in CI). The
stack, its volumes and every secret and config it made are removed even when an assertion fails.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


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


def _remove_stack(stack: str) -> None:
    docker("stack", "rm", stack)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and docker(
            "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.strip():
        time.sleep(2)
    for kind in ("volume", "secret", "config"):
        names = docker(kind, "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}").stdout.split()
        if names:
            docker(kind, "rm", *(["-f"] if kind == "volume" else []), *names)


def _service(stack: str, name: str) -> dict[str, Any]:
    done = docker("service", "inspect", f"{stack}_{name}")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout)[0])


def _container(stack: str, name: str) -> str:
    ids = docker("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={stack}_{name}").stdout.split()
    assert ids, f"no running container of {stack}_{name}"
    return ids[0]


def _status_line(container: str, field: str) -> str:
    done = docker("exec", container, "cat", "/proc/1/status")
    assert done.returncode == 0, done.stderr
    return next(line.split(":", 1)[1].strip() for line in done.stdout.splitlines() if line.startswith(f"{field}:"))


def _configs(stack: str) -> set[str]:
    return set(docker("config", "ls", "--filter", f"label=com.docker.stack.namespace={stack}",
                      "--format", "{{.Name}}").stdout.split())


def test_secrets_hardening_and_versioned_configs_on_a_single_node_swarm(swarm: None, stack_project: Any,
                                                                        app_image: str) -> None:
    p = stack_project
    stack = f"mtk{uuid.uuid4().hex[:8]}"
    values = {"SECRET_KEY": secrets.token_hex(32), "MAIL_PASSWORD": secrets.token_urlsafe(18),
              "REDIS_PASSWORD": secrets.token_hex(24)}
    p.write_env(**values, DEFAULT_RATE_LIMIT="100000 per minute", MONTERO_APP_REPLICAS="1")

    def leaks(text: str) -> list[str]:
        return [name for name, value in values.items() if value in text]

    try:
        done = p.run_montero("swarm", "deploy", "--stack", stack, "--timeout", "480", timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        assert leaks(done.stdout + done.stderr) == []
        assert "settings as swarm secrets: MAIL_PASSWORD, REDIS_PASSWORD, SECRET_KEY" in done.stderr

        # The healthy app reached Redis with the password it read from its secret file.
        status, body = p.wait_http("/health", service="nginx", timeout=90)
        assert status == 200, body
        assert json.loads(body)["redis"]["status"] == "ok", body

        # No secret in any service spec; the app and Redis see only the files' paths.
        for name in ("app", "redis", "nginx"):
            inspected = docker("service", "inspect", f"{stack}_{name}").stdout
            assert inspected and leaks(inspected) == [], name
        app_env = _service(stack, "app")["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"]
        assert {"SECRET_KEY_FILE=/run/secrets/secret_key", "MAIL_PASSWORD_FILE=/run/secrets/mail_password",
                "REDIS_PASSWORD_FILE=/run/secrets/redis_password"} <= set(app_env)
        assert not [e for e in app_env if e.split("=", 1)[0] in values]
        redis_cli = docker("exec", _container(stack, "redis"), "redis-cli", "ping")
        assert "NOAUTH" in redis_cli.stdout + redis_cli.stderr  # Redis asks for the password

        # Hardened like compose: read-only root, no capability beyond the listed ones, pids limit,
        # no-new-privileges set by each start line, Redis and the app not root.
        for name in ("app", "redis", "nginx"):
            container = _container(stack, name)
            host = json.loads(docker("inspect", container).stdout)[0]["HostConfig"]
            assert host["ReadonlyRootfs"] is True, name
            assert [c.removeprefix("CAP_") for c in host["CapDrop"] or []] == ["ALL"], (name, host["CapDrop"])
            assert host["PidsLimit"], name
            assert _status_line(container, "NoNewPrivs") == "1", name
        assert _status_line(_container(stack, "redis"), "Uid").split()[0] != "0"
        assert _status_line(_container(stack, "app"), "Uid").split()[0] == "1000"

        # An edited nginx file: a new config name, nginx rolls, the old generation is kept for a rollback.
        first = _configs(stack)
        conf = p.root / "docker" / "nginx" / "nginx.conf"
        original = conf.read_text()
        conf.write_text(original + "\n# montero e2e: edit 1\n")
        done = p.run_montero("swarm", "deploy", "--stack", stack, "--timeout", "480", timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        second = _configs(stack)
        added = second - first
        assert len(added) == 1 and next(iter(added)).startswith(f"{stack}_nginx_conf_"), (first, second)
        nginx_configs = {c["ConfigName"] for c in
                         _service(stack, "nginx")["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"]}
        assert added <= nginx_configs
        assert first <= second  # the previous nginx.conf stays: `swarm rollback` returns to it
        status, body = p.wait_http("/health", service="nginx", timeout=90)
        assert status == 200, body

        # A second edit: the first generation, used by no spec and no rollback spec, is removed.
        conf.write_text(original + "\n# montero e2e: edit 2\n")
        done = p.run_montero("swarm", "deploy", "--stack", stack, "--timeout", "480", timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        third = _configs(stack)
        gone = (first - second) | (second - third)
        old_conf = next(n for n in first if n.startswith(f"{stack}_nginx_conf_"))
        assert old_conf not in third and old_conf in gone, (first, second, third)
        assert f"removed the old config {old_conf}" in done.stderr
        assert len([n for n in third if n.startswith(f"{stack}_nginx_conf_")]) == 2  # current and rollback
        status, body = p.wait_http("/health", service="nginx", timeout=90)
        assert status == 200, body
        assert leaks(done.stdout + done.stderr) == []
    finally:
        _remove_stack(stack)
