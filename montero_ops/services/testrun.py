"""`montero test`: the backend suite in a one-off container of the app image's `test` stage.

Not `compose exec` in the running app: the runtime image ships neither pytest nor the
tests, and the suite needs no running stack. The image is built through
docker/compose.test.yml layered on compose.yml, so it gets exactly the app's build args
(PYTHON_IMAGE from the environment or .env) and ca_certs secret; BuildKit's cache makes
every build after the first a no-op. The checkout's backend/ and tests/backend are
mounted read-only at /src in the repository's layout (tests/backend/api_helpers.py puts
../../backend on sys.path), so code edits need no rebuild.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from montero_ops.errors import CommandFailed
from montero_ops.project import Project
from montero_ops.services.containers import APP_SERVICE
from montero_ops.services.dockercmd import compose_cmd, docker_cmd, run_passthrough

if TYPE_CHECKING:
    from python_on_whales import DockerClient

TEST_OVERRIDE = Path("docker") / "compose.test.yml"
SRC = "/src"
MOUNTS = ("backend", "tests/backend")
# testpaths applies only when the user names no path, so `-- tests/backend/test_x.py` runs
# that file alone; no cache provider because /src is read-only.
PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={SRC}", "-o", "testpaths=tests/backend"]
COVERAGE_ARGS = ["--cov=montero_api", "--cov-report=term-missing"]


def suite_image(project: Project) -> str:
    """The tag docker/compose.test.yml gives the image (`${COMPOSE_PROJECT_NAME}-app:test`)."""
    return f"{project.name}-app:test"


def suite_project(project: Project) -> Project:
    """The project with the test override layered on; refuses when a part is missing."""
    override = project.root / TEST_OVERRIDE
    if not override.is_file():
        raise CommandFailed(f"{override} is missing",
                            hint="restore docker/compose.test.yml from the Montero repository")
    for part in MOUNTS:
        if not (project.root / part).is_dir():
            # docker would create a missing bind source as an empty root-owned folder.
            raise CommandFailed(f"no {part}/ folder in {project.root}",
                                hint="`montero test` runs the checkout's tests/backend against its backend/")
    return project.with_compose_files(override)


def build_cmd(client: DockerClient) -> list[str]:
    """`docker compose … -f docker/compose.test.yml build app` (client made from suite_project)."""
    return compose_cmd(client) + ["build", APP_SERVICE]


def run_cmd(client: DockerClient, project: Project, pytest_args: list[str], tty: bool,
            cov: bool = False) -> list[str]:
    """`docker run --rm` of the test image: pytest's output streams, its exit code is docker's."""
    cmd = docker_cmd(client) + ["run", "--rm"]
    if tty:
        cmd += ["--interactive", "--tty"]
    for part in MOUNTS:
        cmd += ["--volume", f"{project.root / part}:{SRC}/{part}:ro"]
    cmd += ["--workdir", SRC, suite_image(project)]
    return cmd + PYTEST + (COVERAGE_ARGS if cov else []) + pytest_args


@contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Compose prints build progress on stdout when it is not a terminal; stdout is pytest's."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_tests(build_client: DockerClient, project: Project, pytest_args: list[str], tty: bool,
              cov: bool = False, show: Callable[[list[str]], None] = lambda cmd: None) -> int:
    """Build the test image (cached), run the suite; pytest's exit code.

    `build_client` must come from suite_project(project); `show` sees each command first.
    """
    build = build_cmd(build_client)
    show(build)
    with stdout_to_stderr():
        code = run_passthrough(build)
    if code:
        raise CommandFailed(f"building the test image {suite_image(project)} failed (exit {code})",
                            hint="the build output above says why; fix it and run `montero test` again")
    run = run_cmd(build_client, project, pytest_args, tty, cov=cov)
    show(run)
    return run_passthrough(run)
