"""A real three-node Docker Swarm for the `cluster` tests (scripts/cluster.sh does the work).

Each node is its own dockerd in its own network namespace on a host bridge, with a registry
on the bridge address. The fixture always runs `cluster.sh down`, also when `up` or a test
failed half-way, and then checks that nothing it made is left (namespaces, links, daemons,
mounts, the iptables rule).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "cluster.sh"
IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _run(cmd: list[str], timeout: float = 120, env: dict[str, str] | None = None,
         input: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})})


@dataclass
class Cluster:
    root: Path
    nodes: int
    registry: str

    def sock(self, node: int) -> str:
        return f"unix://{self.root}/node{node}/docker.sock"

    def docker(self, node: int, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return _run(["docker", *args], timeout=timeout, env={"DOCKER_HOST": self.sock(node)})

    def manager(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.docker(1, *args, timeout=timeout)

    def script(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return _run(["bash", str(SCRIPT), *args], timeout=timeout,
                    env={"MONTERO_CLUSTER_DIR": str(self.root)})

    def load_image(self, image: str, node: int = 1) -> None:
        """Copy an image of the host engine into one node's image store."""
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(["docker", "load", "-q"], stdin=save.stdout, capture_output=True, text=True,
                              env={**os.environ, "DOCKER_HOST": self.sock(node)}, timeout=300, check=False)
        save.wait(timeout=60)
        assert save.returncode == 0 and load.returncode == 0, load.stderr

    def push(self, image: str) -> str:
        """Load IMAGE into the manager and push it to the cluster's registry: REGISTRY/IMAGE."""
        self.load_image(image)
        target = f"{self.registry}/{image}"
        assert self.manager("tag", image, target).returncode == 0
        pushed = self.manager("push", "-q", target, timeout=300)
        assert pushed.returncode == 0, pushed.stderr
        return target

    def node_ids(self) -> dict[int, str]:
        return {n: self.docker(n, "info", "--format", "{{.Swarm.NodeID}}").stdout.strip()
                for n in range(1, self.nodes + 1)}

    def wait(self, check: object, timeout: float, what: str) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if check():  # type: ignore[operator]
                return time.monotonic() - start
            time.sleep(0.5)
        raise AssertionError(f"{what}: not within {timeout:.0f}s")


def leftovers(root: Path) -> list[str]:
    """What a cluster under ROOT could leave behind on the host; empty when all is gone."""
    found: list[str] = []
    netns = _run(["ip", "netns", "list"]).stdout
    found += [f"namespace {line.split()[0]}" for line in netns.splitlines() if line.startswith("mnt")]
    links = _run(["ip", "-o", "link", "show"]).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines()
              if line.split(":")[1].strip().split("@")[0] in {"mntbr0"} | {f"mntv{i}" for i in range(1, 10)}]
    procs = _run(["pgrep", "-af", str(root)]).stdout.strip()
    found += [f"process {line}" for line in procs.splitlines() if line]
    mounts = Path("/proc/mounts").read_text()
    found += [f"mount {m.split()[1]}" for m in mounts.splitlines() if m.split()[1].startswith(str(root))]
    rules = _run(["iptables", "-S"]).stdout
    found += [f"iptables {line}" for line in rules.splitlines() if "mntbr0" in line]
    if root.exists():
        found.append(f"folder {root}")
    return found


def cluster_problem() -> str | None:
    if os.geteuid() != 0:
        return "a multi-node cluster needs root (network namespaces)"
    for tool in ("ip", "iptables", "nsenter", "dockerd", "docker-registry"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs it)"
    if Path("/tmp/montero-cluster-e2e/nodes").exists():
        return "another cluster test is using /tmp/montero-cluster-e2e"
    return None


@pytest.fixture(scope="session", name="cluster")
def cluster_fixture(docker_engine: str) -> Iterator[Cluster]:
    problem = cluster_problem()
    if problem:
        if IN_CI:
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)
    root = Path("/tmp/montero-cluster-e2e")
    made = Cluster(root=root, nodes=3, registry="10.251.0.1:5556")
    try:
        up = made.script("up", "3")
        assert up.returncode == 0, f"cluster.sh up failed:\n{up.stderr[-3000:]}"
        yield made
    finally:
        down = made.script("down")
        left = leftovers(root)
        assert down.returncode == 0 and not left, f"cluster.sh down left {left}:\n{down.stderr[-2000:]}"
