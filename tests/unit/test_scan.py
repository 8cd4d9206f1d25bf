"""`montero scan`: a stand-in `trivy` executable on PATH records its arguments (a real subprocess)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from montero_ops.cli import app


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "compose.yml").write_text(
        "services:\n  app:\n    image: ${MONTERO_APP_IMAGE:-montero-app:latest}\n")
    monkeypatch.setenv("MONTERO_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("MONTERO_APP_IMAGE", "registry.example/montero-app:1.2")
    return tmp_path


def fake_trivy(folder: Path, exit_code: int) -> Path:
    bin_dir = folder / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "trivy"
    script.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {folder}/trivy-args\necho report\nexit {exit_code}\n")
    script.chmod(0o755)
    return bin_dir


def test_without_trivy_exits_5_with_the_install_hint(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shutil.which", lambda name: None)
    result = CliRunner().invoke(app, ["scan", "--image", "x:1"])
    assert result.exit_code == 5
    assert "Trivy is not installed" in result.output and "install.sh" in result.output


def test_scans_the_app_image_named_by_compose(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_trivy(project, 0)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = CliRunner().invoke(app, ["scan"])
    assert result.exit_code == 0, result.output
    args = (project / "trivy-args").read_text().split("\n")[:-1]
    assert args == ["image", "--severity", "HIGH,CRITICAL", "--exit-code", "1", "--no-progress",
                    "registry.example/montero-app:1.2"]


def test_findings_exit_1_unless_no_fail(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = fake_trivy(project, 1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    result = CliRunner().invoke(app, ["scan", "--image", "img:2", "--severity", "critical"])
    assert result.exit_code == 1
    assert "Trivy found CRITICAL vulnerabilities in img:2" in result.output
    fake_trivy(project, 0)
    result = CliRunner().invoke(app, ["scan", "--image", "img:2", "--no-fail", "--json"])
    assert result.exit_code == 0, result.output
    args = (project / "trivy-args").read_text().split("\n")[:-1]
    assert args == ["image", "--severity", "HIGH,CRITICAL", "--exit-code", "0", "--no-progress",
                    "--format", "json", "img:2"]


def test_unknown_severity_is_a_usage_error(project: Path) -> None:
    result = CliRunner().invoke(app, ["scan", "--image", "x", "--severity", "BOGUS"])
    assert result.exit_code == 2
    assert "unknown severity BOGUS" in result.output
