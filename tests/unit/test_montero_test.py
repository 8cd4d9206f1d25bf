"""`montero test`: build the app image's `test` stage, run pytest in a one-off container."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from python_on_whales.exceptions import DockerException

from tests.unit.conftest import DockerCalls, FakeEngine, compose_prefix

REPO = Path(__file__).resolve().parents[2]
PYTEST = ["python", "-m", "pytest", "-p", "no:cacheprovider", "--rootdir=/src", "-o", "testpaths=tests/backend"]


@pytest.fixture
def suite(project: Path) -> Path:
    """The project gains what `montero test` needs: the override and the suite's folder."""
    shutil.copy(REPO / "docker" / "compose.test.yml", project / "docker" / "compose.test.yml")
    (project / "tests" / "backend").mkdir(parents=True)
    return project


def build_call(root: Path) -> list[str]:
    return compose_prefix(root, files=(root / "docker" / "compose.test.yml",)) + ["build", "app"]


def run_call(root: Path, *extra: str, tty: bool = False) -> list[str]:
    return (["docker", "run", "--rm"] + (["--interactive", "--tty"] if tty else [])
            + ["--volume", f"{root}/backend:/src/backend:ro",
               "--volume", f"{root}/tests/backend:/src/tests/backend:ro",
               "--workdir", "/src", "shop-app:test", *PYTEST, *extra])


def test_builds_then_runs_pytest_without_a_running_stack(cli, docker: DockerCalls, engine: FakeEngine,
                                                          suite: Path) -> None:
    # engine holds no container: the stack is down and the suite runs anyway.
    result = cli("test", "--cov", "--", "-k", "health", "-x")
    assert result.exit_code == 0, result.output
    assert docker.calls == [
        build_call(suite),
        run_call(suite, "--cov=montero_api", "--cov-report=term-missing", "-k", "health", "-x"),
    ]
    # Both stream to the terminal: nothing captured.
    assert all(kw == {"capture_stdout": False, "capture_stderr": False} for kw in docker.kwargs)


def test_env_file_reaches_the_build(cli, docker: DockerCalls, engine: FakeEngine, suite: Path) -> None:
    """MONTERO_PYTHON_IMAGE in .env becomes the build's PYTHON_IMAGE because compose reads .env."""
    (suite / ".env").write_text("MONTERO_PYTHON_IMAGE=montero-base:bookworm\n")
    assert cli("test").exit_code == 0
    assert docker.calls[0] == compose_prefix(suite, env_file=True,
                                             files=(suite / "docker" / "compose.test.yml",)) + ["build", "app"]
    assert docker.calls[1] == run_call(suite)


def test_a_terminal_gets_an_interactive_tty(cli, docker: DockerCalls, engine: FakeEngine, suite: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("montero_ops.commands.exec._tty", lambda: True)
    assert cli("test", "--", "--pdb").exit_code == 0
    assert docker.calls[1] == run_call(suite, "--pdb", tty=True)


@pytest.mark.parametrize("code", [1, 2, 5])
def test_exits_with_pytests_code(cli, docker: DockerCalls, engine: FakeEngine, suite: Path, code: int) -> None:
    docker.respond(lambda c: c[1] == "run", DockerException(["docker", "run"], code))
    result = cli("test", "--", "-k", "nonexistent_xyz")
    assert result.exit_code == code
    assert result.stderr == ""


def test_a_failed_build_runs_nothing(cli, docker: DockerCalls, engine: FakeEngine, suite: Path) -> None:
    docker.respond(lambda c: c[-2:] == ["build", "app"], DockerException(["docker", "compose"], 17))
    result = cli("test")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "Error: building the test image shop-app:test failed (exit 17)",
        "  Fix: the build output above says why; fix it and run `montero test` again",
    ]
    assert docker.calls == [build_call(suite)]


def test_without_the_override(cli, docker: DockerCalls, engine: FakeEngine, project: Path) -> None:
    (project / "tests" / "backend").mkdir(parents=True)
    result = cli("test")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: {project}/docker/compose.test.yml is missing",
        "  Fix: restore docker/compose.test.yml from the Montero repository",
    ]
    assert docker.calls == []


def test_without_the_suite(cli, docker: DockerCalls, engine: FakeEngine, suite: Path) -> None:
    shutil.rmtree(suite / "tests")
    result = cli("test")
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == f"Error: no tests/backend/ folder in {suite}"
    assert docker.calls == []


def test_build_progress_goes_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    """Compose prints build progress on stdout when it is not a terminal; stdout is pytest's alone."""
    from montero_ops.services.testrun import stdout_to_stderr

    with stdout_to_stderr():
        os.write(1, b"#5 CACHED\n")
    os.write(1, b"5 passed\n")
    out, err = capfd.readouterr()
    assert (out, err) == ("5 passed\n", "#5 CACHED\n")


def test_override_targets_the_test_stage_with_a_project_tag() -> None:
    import yaml

    override = yaml.safe_load((REPO / "docker" / "compose.test.yml").read_text())
    assert override == {"services": {"app": {"build": {"target": "test"},
                                             "image": "${COMPOSE_PROJECT_NAME}-app:test"}}}
