"""Where `montero deploy`, `rollback`, `releases` and `update` act: this host or a swarm stack.

The verbs are written once (commands/deploy.py, commands/releases.py) and so is what a release
is (services/releases.py); the target decides how it reaches the replicas:
  host   compose replicas behind nginx, replaced one at a time (services/release_deploy.py);
  swarm  the stack's app service, `docker service update` start-first (services/release_swarm.py).

The target is how the stack runs: `--stack NAME` names a swarm stack; without it, the project's
compose replicas on this host are the target when they run, else the swarm stack named by
MONTERO_STACK (default `montero`) when this engine manages one, else this host (which then says
that nothing runs).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from montero_ops.project import Project
from montero_ops.services import releases as rel

if TYPE_CHECKING:
    from python_on_whales import DockerClient

    from montero_ops.dockerapi import DockerAPI

DEFAULT_STACK = "montero"


@dataclass(frozen=True)
class Target:
    kind: str  # host | swarm
    stack: str | None = None

    @property
    def history_key(self) -> str:
        return f"swarm-{self.stack}" if self.kind == "swarm" else ""

    def describe(self) -> str:
        return f"stack {self.stack} on this swarm" if self.kind == "swarm" else "this host"

    def to_dict(self) -> dict[str, str | None]:
        return {"kind": self.kind, "stack": self.stack}


HOST = Target("host")


def default_stack() -> str:
    return os.environ.get("MONTERO_STACK", "").strip() or DEFAULT_STACK


def choose(project: Project, stack: str | None, host_runs: Callable[[], bool],
           swarm_client: Callable[[], DockerClient]) -> Target:
    """The target of a command (see the module docstring). `host_runs` says whether the project's
    app replicas run on this host; `swarm_client` gives the client asked about the swarm."""
    if stack:
        return Target("swarm", stack)
    if host_runs():
        return HOST
    from montero_ops.services.release_swarm import stack_exists

    candidate = default_stack()
    if stack_exists(swarm_client(), candidate):
        return Target("swarm", candidate)
    return HOST


def host_runs(engine: DockerAPI, project: Project) -> bool:
    """True when the project's app replicas run on this host (compose's containers, not a swarm's tasks)."""
    from montero_ops.services.rolling import replicas

    # A swarm task of an image compose built carries the image's com.docker.compose.* labels, so it
    # looks like a compose replica of the project: the swarm's own label tells it apart.
    return any("com.docker.swarm.service.id" not in (c.get("Labels") or {})
               for c in replicas(engine, project.name, "app"))


def history(project: Project, target: Target) -> rel.History:
    return rel.load_history(project, target.history_key)
