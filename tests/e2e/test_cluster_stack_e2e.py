"""The montero stack on a real three-node Swarm (scripts/cluster.sh), driven as a user would:
montero with DOCKER_HOST (and once --context) pointing at node 1's socket, never the local daemon.

One stack for the module, in order: refusals (no registry, SQLite unpinned) before anything
changes; deploy with --registry (by digest) + PostgreSQL + nginx/HTTPS (certificates as swarm
secrets); a rolling update of 6 replicas over 3 nodes under load through nginx; a failing image
rolled back with its reason; status/doctor/logs/--context; backup and restore of the cluster's
PostgreSQL; a worker killed under load and brought back. Every response of the load loop is
counted; the figures are printed (docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.cluster

REPO = Path(__file__).resolve().parents[2]
STACK = "mtc"
EDGE = "10.251.0.11"  # node 1: labelled edge, redis and postgres; its nginx publishes 80/443 (host mode)
REPLICAS = 6


@dataclass
class Load:
    """GET /health over HTTPS through nginx on the edge node, 4 clients, every response counted."""

    stop: threading.Event = field(default_factory=threading.Event)
    statuses: collections.Counter[Any] = field(default_factory=collections.Counter)
    failures: list[Any] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        context = ssl._create_unverified_context()  # the self-signed pair of the test
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPSConnection(EDGE, 443, timeout=15, context=context)
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                conn.close()
                self.statuses[resp.status] += 1
                if resp.status != 200:
                    self.failures.append(resp.status)
            except OSError as exc:
                self.statuses["error"] += 1
                self.failures.append(str(exc))
            time.sleep(0.02)

    def __enter__(self) -> Self:
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    @property
    def total(self) -> int:
        return sum(self.statuses.values())


@dataclass
class Site:
    root: Path
    env: dict[str, str]
    cluster: Cluster

    def montero(self, *args: str, timeout: float = 600, env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "montero_ops", "--project-dir", str(self.root), *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root,
                              env={**self.env, **(env or {})})

    def status(self) -> dict[str, Any]:
        done = self.montero("swarm", "status", "--stack", STACK, "--json")
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    def app(self) -> dict[str, Any]:
        return next(s for s in self.status()["services"] if s["name"] == f"{STACK}_app")

    def build_on_manager(self, tag: str, dockerfile: str) -> None:
        built = subprocess.run(["docker", "build", "-q", "-t", tag, "-"], input=dockerfile, capture_output=True,
                               text=True, timeout=300, check=False,
                               env={**os.environ, "DOCKER_HOST": self.cluster.sock(1), "DOCKER_BUILDKIT": "0"})
        assert built.returncode == 0, built.stderr


def _postgres_image(stack_env: dict[str, str]) -> str:
    """montero-postgres:15 on the host engine (built from the local Debian base when missing)."""
    image = "montero-postgres:15"
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False).returncode != 0:
        base = stack_env.get("MONTERO_PYTHON_IMAGE", "")
        env = {**os.environ, **({"MONTERO_POSTGRES_BASE_IMAGE": base} if base.startswith("montero-base:") else {})}
        built = subprocess.run(["docker", "build", "-q", "-t", image, "--build-arg",
                                f"BASE_IMAGE={env.get('MONTERO_POSTGRES_BASE_IMAGE', 'debian:bookworm-slim')}",
                                str(REPO / "docker" / "postgres")], capture_output=True, text=True, timeout=900,
                               check=False, env=env)
        assert built.returncode == 0, built.stderr[-2000:]
    return image


@pytest.fixture(scope="module")
def site(cluster: Cluster, app_image: str, stack_env: dict[str, str]) -> Iterator[Site]:
    root = Path(tempfile.mkdtemp(prefix="mtc-"))
    for part in ("docker", "backend"):
        shutil.copytree(REPO / part, root / part, ignore=shutil.ignore_patterns("__pycache__", "certs"))
    # Images reach the nodes the way they would on real hosts: through the registry.
    base = cluster.push(stack_env["MONTERO_REDIS_IMAGE"])
    nginx = base if stack_env["MONTERO_NGINX_IMAGE"] == stack_env["MONTERO_REDIS_IMAGE"] \
        else cluster.push(stack_env["MONTERO_NGINX_IMAGE"])
    postgres = cluster.push(_postgres_image(stack_env))
    cluster.load_image(app_image)  # montero pushes it (the manager holds what it deploys)
    (root / ".env").write_text("\n".join([
        f"SECRET_KEY={secrets.token_hex(32)}", f"POSTGRES_PASSWORD={secrets.token_hex(16)}",
        "DEFAULT_RATE_LIMIT=100000 per minute", f"MONTERO_REDIS_IMAGE={base}", f"MONTERO_NGINX_IMAGE={nginx}",
        f"MONTERO_POSTGRES_IMAGE={postgres}", f"MONTERO_APP_IMAGE={app_image}", "MONTERO_GUNICORN_WORKERS=1",
        f"MONTERO_APP_REPLICAS={REPLICAS}", "MONTERO_APP_UPDATE_PARALLELISM=3", "MONTERO_APP_UPDATE_MONITOR=5s",
        "MONTERO_HTTP_PORT=80", "MONTERO_HTTPS_PORT=443", "MONTERO_APP_CPU_RESERVATION=0",
        "MONTERO_APP_MEMORY_RESERVATION=0", ""]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MONTERO_", "DOCKER_"))}
    env.update({"DOCKER_HOST": cluster.sock(1), "NO_COLOR": "1", "COLUMNS": "200"})
    s = Site(root, env, cluster)
    made = s.montero("tls", "self-signed", "--domain", "localhost")
    assert made.returncode == 0, made.stderr
    try:
        yield s
    finally:
        cluster.manager("stack", "rm", STACK)
        shutil.rmtree(root, ignore_errors=True)


def test_refusals_before_anything_changes(site: Site) -> None:
    done = site.montero("swarm", "deploy", "--stack", STACK)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "this swarm has 3 nodes and" in done.stderr and "is a local image: the other nodes cannot pull it" \
        in " ".join(done.stderr.split())
    done = site.montero("swarm", "deploy", "--stack", STACK, "--registry", site.cluster.registry)
    assert done.returncode == 2
    assert "no node is labelled montero.redis=true" in " ".join(done.stderr.split())
    ids = site.cluster.node_ids()
    assert site.cluster.manager("node", "update", "--label-add", "montero.redis=true", "--label-add",
                                "montero.edge=true", "--label-add", "montero.postgres=true", ids[1]).returncode == 0
    done = site.montero("swarm", "deploy", "--stack", STACK, "--registry", site.cluster.registry)
    assert done.returncode == 2
    flat = " ".join(done.stderr.split())
    assert "the app uses SQLite: replicas on different nodes would each write their own database file" in flat
    assert "--profile postgres" in flat and "montero.sqlite=true" in flat
    # Nothing was pushed or deployed.
    assert site.cluster.manager("service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}"
                                ).stdout.strip() == ""


def test_deploy_registry_postgres_https(site: Site) -> None:
    start = time.monotonic()
    done = site.montero("swarm", "deploy", "--stack", STACK, "--registry", site.cluster.registry,
                        "--profile", "postgres", "--timeout", "480", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\ncluster deploy (push + {REPLICAS} app replicas + postgres + redis + nginx): "
          f"{time.monotonic() - start:.0f}s")
    state = site.status()
    assert [n["state"] for n in state["nodes"]] == ["ready"] * 3
    by = {s["name"].removeprefix(f"{STACK}_"): s for s in state["services"]}
    assert sorted(by["app"]["tasks_per_node"]) == ["node1", "node2", "node3"], by["app"]
    assert sum(by["app"]["tasks_per_node"].values()) == REPLICAS
    for name in ("redis", "postgres", "nginx"):
        assert by[name]["tasks_per_node"] == {"node1": 1}, by[name]
    # Deployed by digest: every node runs exactly the bytes pushed.
    image = site.cluster.manager("service", "inspect", f"{STACK}_app", "--format",
                                 "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip()
    assert image.startswith(f"{site.cluster.registry}/") and "@sha256:" in image
    # The data services' volumes live on their labelled node only.
    for node in (1, 2, 3):
        volumes = site.cluster.docker(node, "volume", "ls", "-q").stdout.split()
        for volume in ("postgres-data", "redis-data"):
            assert (f"{STACK}_{volume}" in volumes) is (node == 1), (node, volumes)
    # HTTPS through nginx, redirect and HSTS as on one host; the pair is a swarm secret.
    context = ssl._create_unverified_context()
    conn = http.client.HTTPSConnection(EDGE, 443, timeout=10, context=context)
    conn.request("GET", "/health")
    resp = conn.getresponse()
    assert resp.status == 200 and "max-age=" in (resp.getheader("Strict-Transport-Security") or "")
    plain = http.client.HTTPConnection(EDGE, 80, timeout=10)
    plain.request("GET", "/health")
    redirect = plain.getresponse()
    assert redirect.status == 301 and (redirect.getheader("Location") or "").startswith("https://")
    nginx = json.loads(site.cluster.manager("service", "inspect", f"{STACK}_nginx").stdout)[0]["Spec"]
    targets = {s["File"]["Name"] for s in nginx["TaskTemplate"]["ContainerSpec"]["Secrets"]}
    assert targets == {"/etc/nginx/certs/fullchain.pem", "/etc/nginx/certs/privkey.pem"}
    assert "PRIVATE KEY" not in json.dumps(nginx)


def test_rolling_update_under_load_through_nginx(site: Site) -> None:
    old = site.app()["image"]
    site.build_on_manager("montero-app:cluster-v2", f"FROM {old}\nLABEL montero.test=cluster-v2\n")
    with Load() as load:
        start = time.monotonic()
        done = site.montero("swarm", "deploy", "--stack", STACK, "--registry", site.cluster.registry,
                            "--profile", "postgres", "--image", "montero-app:cluster-v2", "--timeout", "480",
                            timeout=600)
        took = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\nrolling update of {REPLICAS} replicas on 3 nodes: {took:.0f}s, {load.total} requests, "
          f"{len(load.failures)} failed")
    assert load.failures == [], load.failures[:10]
    assert load.total > 100
    app = site.app()
    assert app["image"].endswith("/montero-app:cluster-v2") and app["running"] == REPLICAS
    assert sorted(app["tasks_per_node"]) == ["node1", "node2", "node3"]


def test_a_failing_image_rolls_back_with_its_reason(site: Site) -> None:
    site.build_on_manager("montero-app:cluster-bad", "FROM montero-app:cluster-v2\nENTRYPOINT [\"sh\", \"-c\", "
                          "\"echo montero-e2e: broken on purpose >&2; exit 3\"]\n")
    with Load() as load:
        done = site.montero("swarm", "deploy", "--stack", STACK, "--registry", site.cluster.registry,
                            "--profile", "postgres", "--image", "montero-app:cluster-bad", "--timeout", "300",
                            timeout=400)
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    err = " ".join(done.stderr.split())
    assert f"{STACK}_app: the update failed and was rolled back to the previous version" in err
    assert "non-zero exit (3)" in err and "montero-e2e: broken on purpose" in err
    assert load.failures == [], load.failures[:10]
    app = site.app()
    assert app["image"].endswith("/montero-app:cluster-v2") and app["running"] == REPLICAS


def test_status_doctor_logs_and_context(site: Site) -> None:
    doctor = site.montero("doctor", "--swarm", "--stack", STACK, "--json")
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    found = {f["id"]: f for f in json.loads(doctor.stdout)}
    assert found["swarm.nodes"]["status"] == "pass" and found["swarm.app"]["status"] == "pass"
    assert found["swarm.app.failures"]["status"] == "warn"  # the bad image's tasks, named
    logs = site.montero("logs", "--stack", STACK, "app", "--tail", "50")
    assert logs.returncode == 0 and "broken on purpose" in logs.stdout + logs.stderr
    # --context instead of DOCKER_HOST: a context naming the manager, in a scratch docker config.
    with tempfile.TemporaryDirectory() as config:
        env = {k: v for k, v in site.env.items() if k != "DOCKER_HOST"}
        env["DOCKER_CONFIG"] = config
        made = subprocess.run(["docker", "context", "create", "mtc-manager", "--docker",
                               f"host={site.cluster.sock(1)}"], capture_output=True, text=True, env=env, check=False)
        assert made.returncode == 0, made.stderr
        ctx = subprocess.run([sys.executable, "-m", "montero_ops", "--project-dir", str(site.root), "--context",
                              "mtc-manager", "swarm", "status", "--stack", STACK, "--json"], capture_output=True,
                             text=True, env=env, timeout=120, check=False)
    assert ctx.returncode == 0, ctx.stderr
    assert len(json.loads(ctx.stdout)["nodes"]) == 3


def _psql(site: Site, sql: str) -> str:
    image = site.cluster.manager("service", "inspect", f"{STACK}_postgres", "--format",
                                 "{{.Spec.TaskTemplate.ContainerSpec.Image}}").stdout.strip()
    password = next(line.split("=", 1)[1] for line in (site.root / ".env").read_text().splitlines()
                    if line.startswith("POSTGRES_PASSWORD="))
    done = subprocess.run(["docker", "run", "--rm", "--network", f"{STACK}_default", "-e", "PGPASSWORD",
                           "--entrypoint", "psql", image, "-h", "postgres", "-U", "montero", "-d", "montero", "-XAtc",
                           sql], capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "DOCKER_HOST": site.cluster.sock(1), "PGPASSWORD": password})
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_backup_and_restore_postgres_on_the_cluster(site: Site) -> None:
    _psql(site, "CREATE TABLE e2e_marker (v text); INSERT INTO e2e_marker VALUES ('before')")
    backup = site.montero("backup", "postgres", "--stack", STACK)
    assert backup.returncode == 0, backup.stderr
    _psql(site, "UPDATE e2e_marker SET v = 'after'")
    restored = site.montero("restore", "postgres", "--latest", "--stack", STACK, "--yes", timeout=400)
    assert restored.returncode == 0, restored.stderr
    assert _psql(site, "SELECT v FROM e2e_marker") == "before"
    app = site.app()  # restore waited until the app was back
    assert app["running"] == REPLICAS, (app, restored.stderr[-2000:])


def test_node_loss_under_load_and_return(site: Site) -> None:
    ids = site.cluster.node_ids()
    lost = ids[3]
    with Load() as load:
        killed = site.cluster.script("kill-node", "3")
        assert killed.returncode == 0, killed.stderr
        start = time.monotonic()

        def full_on_survivors() -> bool:
            per_node = site.app()["tasks_per_node"]
            return sum(n for node, n in per_node.items() if node != "node3") == REPLICAS

        site.cluster.wait(full_on_survivors, 240, f"{REPLICAS} app tasks on nodes 1 and 2")
        recovered = time.monotonic() - start
        doctor = site.montero("doctor", "--swarm", "--stack", STACK, "--json")
    print(f"\nnode loss under load: back to {REPLICAS}/{REPLICAS} in {recovered:.0f}s, {load.total} requests, "
          f"{len(load.failures)} failed")
    assert doctor.returncode == 1
    down = {f["id"]: f for f in json.loads(doctor.stdout)}["swarm.node.node3"]
    assert down["status"] == "fail" and "is down" in down["message"]
    assert load.failures == [], load.failures[:10]

    started = site.cluster.script("start-node", "3")
    assert started.returncode == 0, started.stderr
    site.cluster.wait(lambda: site.cluster.manager("node", "inspect", "--format", "{{.Status.State}}", lost)
                      .stdout.strip() == "ready", 120, "node 3 ready again")
    # Converged: the returning node's stale tasks are stopped, the replica count is exact.
    site.cluster.wait(lambda: site.app()["running"] == REPLICAS and site.montero(
        "doctor", "--swarm", "--stack", STACK).returncode == 0, 180, "the cluster converged")
