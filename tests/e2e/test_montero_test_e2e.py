"""`montero test` against a real engine: the test stage is built, pytest runs in a one-off
container with the project's backend/ and tests/backend mounted, its exit code comes back.

A small selection (`-k health`) keeps CI time down; the full suite runs the same way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import REPO, StackProject


@pytest.fixture(scope="module")
def suite_project(module_stack_project: StackProject) -> Iterator[StackProject]:
    """The harness copies what the stack needs; `montero test` also needs the suite."""
    project = module_stack_project
    shutil.copytree(REPO / "tests" / "backend", project.root / "tests" / "backend",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    yield project
    subprocess.run(["docker", "image", "rm", "--force", f"{project.name}-app:test"],
                   capture_output=True, check=False, timeout=120)


def test_runs_the_selected_backend_tests_without_the_stack(suite_project: StackProject) -> None:
    done = suite_project.run_montero("test", "--", "-q", "-k", "health")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"^\d+ passed, \d+ deselected in ", done.stdout, re.MULTILINE), done.stdout[-2000:]
    # Build progress stays on stderr; stdout is pytest's alone.
    assert "Built" not in done.stdout
    # Nothing of the stack was started: the suite ran in a removed one-off container.
    ps = suite_project.compose("ps", "--all", "--quiet")
    assert ps.returncode == 0 and ps.stdout.strip() == "", ps.stdout
    image = subprocess.run(["docker", "image", "inspect", f"{suite_project.name}-app:test"],
                           capture_output=True, check=False, timeout=60)
    assert image.returncode == 0


def test_exits_with_pytests_own_code(suite_project: StackProject) -> None:
    done = suite_project.run_montero("test", "--", "-q", "-k", "nonexistent_xyz")
    assert done.returncode == 5, done.stdout[-2000:] + done.stderr[-2000:]  # pytest: no tests collected
    assert re.search(r"^\d+ deselected in ", done.stdout, re.MULTILINE), done.stdout[-2000:]
