"""More than one host, for real: a three-node Swarm (scripts/cluster.sh) on this machine.

What a single node cannot show: images reaching other nodes through a registry and traffic
between tasks on different nodes over an overlay network. The montero stack itself on the
cluster (deploy, HTTPS, rolling update, node loss, operations) is test_cluster_stack_e2e.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.cluster import Cluster

pytestmark = pytest.mark.cluster

WEB = "mntweb"
# A tiny HTTP server on the app image's Python: answers with the node's swarm node id.
SERVE = ("import http.server,os\n"
         "class H(http.server.BaseHTTPRequestHandler):\n"
         "  def do_GET(self):\n"
         "    b=os.environ['NODE'].encode(); self.send_response(200); self.send_header('Content-Length',str(len(b)));"
         " self.end_headers(); self.wfile.write(b)\n"
         "  def log_message(self,*a): pass\n"
         "http.server.ThreadingHTTPServer(('',8000),H).serve_forever()\n")


def running_tasks(c: Cluster, service: str) -> dict[str, int]:
    """node id -> running tasks of SERVICE, as the manager sees it (hostnames are all alike here)."""
    ids = c.manager("service", "ps", "-q", "--filter", "desired-state=running", service).stdout.split()
    if not ids:
        return {}
    tasks = json.loads(c.manager("inspect", *ids).stdout or "[]")
    by_node: dict[str, int] = {}
    for task in tasks:
        if task["Status"]["State"] == "running":
            by_node[task["NodeID"]] = by_node.get(task["NodeID"], 0) + 1
    return by_node


@pytest.fixture(scope="module")
def web(cluster: Cluster, app_image: str) -> Iterator[str]:
    """A 3-replica service from the registry, one task per node, on an attachable overlay."""
    image = cluster.push(app_image)
    assert cluster.manager("network", "create", "-d", "overlay", "--attachable", "mntnet").returncode == 0
    created = cluster.manager(
        "service", "create", "-d", "--name", WEB, "--replicas", "3", "--network", "mntnet",
        "--placement-pref", "spread=node.labels.montero.node", "--with-registry-auth",
        "--env", "NODE={{.Node.ID}}", "--no-healthcheck", "--entrypoint", "python", image, "-c", SERVE)
    assert created.returncode == 0, created.stderr
    cluster.wait(lambda: sum(running_tasks(cluster, WEB).values()) == 3, 180, "3 tasks running")
    yield image
    cluster.manager("service", "rm", WEB)
    cluster.wait(lambda: not cluster.manager("ps", "-q", "--filter", f"label=com.docker.swarm.service.name={WEB}")
                 .stdout.strip(), 60, f"{WEB} removed")
    cluster.manager("network", "rm", "mntnet")


def test_three_nodes_ready_one_leader(cluster: Cluster) -> None:
    nodes = [json.loads(line) for line in cluster.manager("node", "ls", "--format", "{{json .}}").stdout.splitlines()]
    assert len(nodes) == 3
    assert {n["Status"] for n in nodes} == {"Ready"} and {n["Availability"] for n in nodes} == {"Active"}
    assert [n["ManagerStatus"] for n in nodes].count("Leader") == 1


def test_registry_image_runs_on_every_node(cluster: Cluster, web: str) -> None:
    by_node = running_tasks(cluster, WEB)
    assert sorted(by_node.values()) == [1, 1, 1], by_node
    assert set(by_node) == set(cluster.node_ids().values())
    # Nodes 2 and 3 never had the image loaded: they pulled it from the registry.
    # Swarm pins the digest, so the node holds REGISTRY/montero-app@sha256:… (no tag).
    repository = web.rsplit(":", 1)[0]
    for node in (2, 3):
        held = cluster.docker(node, "image", "ls", "--format", "{{.Repository}}").stdout.split()
        assert repository in held, (node, held)


def test_overlay_reaches_tasks_on_other_nodes(cluster: Cluster, web: str) -> None:
    probe = ("import socket,urllib.request\n"
             "ips=sorted({a[4][0] for a in socket.getaddrinfo('tasks." + WEB + "',8000)})\n"
             "print(' '.join(urllib.request.urlopen(f'http://{ip}:8000/',timeout=5).read().decode() for ip in ips))\n")
    # From node 2, a one-off container on the overlay asks every task directly.
    ran = cluster.docker(2, "run", "--rm", "--network", "mntnet", "--no-healthcheck", "--entrypoint", "python", web, "-c", probe,
                         timeout=120)
    assert ran.returncode == 0, ran.stderr
    answered = ran.stdout.split()
    assert sorted(answered) == sorted(cluster.node_ids().values()), answered
