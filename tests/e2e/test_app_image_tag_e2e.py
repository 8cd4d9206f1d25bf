"""Issue 21 point 6 on the real engine: two projects on one engine keep their own app image."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest
from conftest import StackProject, _stack_project

from montero_ops.project import default_app_image


def _image_id(image: str) -> str:
    done = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                          capture_output=True, text=True, check=False, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else ""


@pytest.fixture
def two_projects(tmp_path_factory: pytest.TempPathFactory, stack_env: dict[str, str],
                 app_image: str) -> Iterator[tuple[StackProject, StackProject]]:
    gens = [_stack_project(tmp_path_factory, stack_env) for _ in range(2)]
    projects = [next(g) for g in gens]
    for project in projects:
        project.env.pop("MONTERO_APP_IMAGE")  # the default tag is what this test is about
    try:
        yield projects[0], projects[1]
    finally:
        for project, gen in zip(projects, gens, strict=True):
            subprocess.run(["docker", "image", "rm", "-f", default_app_image(project.name)],
                           capture_output=True, check=False, timeout=120)
            for _ in gen:  # the fixture's own teardown (compose down, temp folder)
                pass


def test_two_projects_build_their_own_app_image(two_projects: tuple[StackProject, StackProject]) -> None:
    staging, prod = two_projects
    built = staging.run_montero("build", "app")
    assert built.returncode == 0, built.stderr[-2000:]
    staging_id = _image_id(default_app_image(staging.name))
    assert staging_id, f"{default_app_image(staging.name)} was not built"

    # The other project's code differs: its build must not move the first project's tag.
    with (prod.root / "backend" / "wsgi.py").open("a") as handle:
        handle.write("\n# prod build\n")
    built = prod.run_montero("build", "app")
    assert built.returncode == 0, built.stderr[-2000:]
    prod_id = _image_id(default_app_image(prod.name))
    assert prod_id and prod_id != staging_id
    assert _image_id(default_app_image(staging.name)) == staging_id
    # What compose starts for each project is its own tag.
    for project in (staging, prod):
        images = project.compose("config", "--images").stdout.split()
        assert default_app_image(project.name) in images
