"""Issue 21 point 6: the default app image is tagged per compose project, one rule for montero and compose."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from montero_ops.project import configured_app_image, default_app_image, find_project

REPO = Path(__file__).resolve().parents[2]


def test_default_tag_is_per_project() -> None:
    assert default_app_image("staging") == "staging-app:latest"
    assert default_app_image("prod") == "prod-app:latest"
    assert default_app_image("prod", "20261202-abc123") == "prod-app:20261202-abc123"


def _project(tmp_path: Path, name: str) -> Path:
    root = tmp_path / name
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text("services: {}\n")
    return root


def test_configured_image_environment_then_env_file_then_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONTERO_APP_IMAGE", raising=False)
    monkeypatch.delenv("COMPOSE_PROJECT_NAME", raising=False)
    root = _project(tmp_path, "shop")
    assert configured_app_image(find_project(root)) == "shop-app:latest"
    assert configured_app_image(find_project(root, project_name="staging")) == "staging-app:latest"
    (root / ".env").write_text("# comment\nexport MONTERO_APP_IMAGE='reg.example/shop:1'\n")
    assert configured_app_image(find_project(root)) == "reg.example/shop:1"
    monkeypatch.setenv("MONTERO_APP_IMAGE", "shop:dev")
    assert configured_app_image(find_project(root)) == "shop:dev"


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI with the compose plugin")
def test_compose_file_names_the_same_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`docker compose -p NAME config` of the shipped file agrees with default_app_image (no engine needed)."""
    monkeypatch.delenv("MONTERO_APP_IMAGE", raising=False)
    images = {}
    for name in ("staging", "prod"):
        proc = subprocess.run(
            ["docker", "compose", "--project-directory", str(REPO), "-f", str(REPO / "docker" / "compose.yml"),
             "--env-file", "/dev/null", "-p", name, "config", "--images"],
            capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0 and "is not a docker command" in proc.stderr:
            pytest.skip("the compose plugin is not installed")
        assert proc.returncode == 0, proc.stderr
        images[name] = proc.stdout.split()
    assert default_app_image("staging") in images["staging"] and default_app_image("prod") in images["prod"]
    assert not set(images["staging"]) & {default_app_image("prod")}
