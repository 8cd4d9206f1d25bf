"""The checks before acting: docker and compose present, project found (exact lines, exit codes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

VERSION_JSON = json.dumps({"Client": {"Version": "20.10.24"}, "Server": {"Version": "20.10.24"}})


def write_docker(bin_dir: Path, script: str) -> None:
    docker = bin_dir / "docker"
    docker.write_text("#!/bin/sh\n" + script)
    docker.chmod(0o755)


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only our fake docker (plus sh for its shebang)."""
    path = tmp_path / "onlybin"
    path.mkdir()
    (path / "sh").symlink_to("/bin/sh")
    monkeypatch.setenv("PATH", str(path))
    return path


def test_daemon_down_exit_3(cli, project: Path, bin_dir: Path) -> None:
    write_docker(bin_dir, 'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. '
                          'Is the docker daemon running?" >&2\nexit 1\n')
    result = cli("up")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        "Error: the Docker daemon is not reachable",
        "  Fix: start Docker (`sudo systemctl start docker`, or `montero setup` which starts dockerd)",
    ]


def test_compose_plugin_missing_exit_3(cli, project: Path, bin_dir: Path) -> None:
    write_docker(bin_dir, f"""case "$1" in
  version) echo '{VERSION_JSON}' ;;
  *) echo 'docker: '"'"'compose'"'"' is not a docker command.' >&2; exit 1 ;;
esac
""")
    result = cli("build")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == "Error: the Docker Compose v2 plugin is missing"
    assert result.stderr.splitlines()[1].startswith("  Fix: install the Compose v2 plugin")


def test_docker_not_installed_exit_3(cli, project: Path, bin_dir: Path) -> None:
    result = cli("down")
    assert result.exit_code == 3
    assert result.stderr.splitlines()[0] == "Error: the docker command is not installed"


@pytest.mark.parametrize("args", [["up"], ["down", "--volumes", "--yes"], ["ps"], ["logs"], ["exec", "app", "--", "id"],
                                  ["migrate", "current"], ["config"], ["env", "check"], ["health"]])
def test_no_project_exit_4(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli(*args)
    assert result.exit_code == 4
    assert result.stderr.splitlines() == [
        f"Error: no Montero stack found in {tmp_path} or any parent folder",
        "  Fix: cd into the project, or pass --project-dir / set MONTERO_PROJECT_DIR",
    ]


def test_bad_project_dir_exit_4(cli, tmp_path: Path) -> None:
    result = cli("--project-dir", str(tmp_path), "ps")
    assert result.exit_code == 4
    assert result.stderr.splitlines()[0] == f"Error: no Montero stack in {tmp_path} (missing docker/compose.yml)"


def test_project_dir_env_and_name(cli, docker, project: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MONTERO_PROJECT_DIR", str(project))
    assert cli("-p", "e2e_Test-1", "build").exit_code == 0
    cmd = docker.calls[0]
    assert cmd[cmd.index("--project-name") + 1] == "e2e_test-1"
    assert cmd[cmd.index("--project-directory") + 1] == str(project)


def test_docker_error_is_one_line(cli, docker, project: Path) -> None:
    from python_on_whales.exceptions import DockerException

    docker.respond(lambda c: "build" in c, DockerException(
        ["docker", "compose", "build"], 17, b"", b"#5 ERROR: failed to solve: process did not complete\nmore\n"))
    result = cli("build")
    assert result.exit_code == 1
    assert result.stderr == "Error: #5 ERROR: failed to solve: process did not complete\n"


def test_compose_error_text_never_shows_a_secret_value(cli, docker, project: Path) -> None:
    """Issue 21.4: compose quotes a value in its errors; montero masks known secret values in captured text.

    (Single-quoted here so montero's own template check, below, lets the command reach compose.)"""
    from python_on_whales.exceptions import DockerException

    (project / ".env").write_text("MAIL_PASSWORD='${UNCLOSED-hunter2-mail'\nSMTP_PASS=pa55-smtp-x\n")
    stderr = (b'Invalid template: "${UNCLOSED-hunter2-mail" while connecting with pa55-smtp-x\n')
    docker.respond(lambda c: "config" in c, DockerException(["docker", "compose", "config"], 15, b"", stderr))
    for args in (("config",), ("-v", "config")):
        result = cli(*args)
        assert result.exit_code == 1
        assert "hunter2" not in result.output and "pa55-smtp-x" not in result.output, args
    assert result.stderr.splitlines()[-1] == 'Error: Invalid template: "********" while connecting with ********'


@pytest.mark.parametrize("args", [("up",), ("build",), ("config",), ("-v", "restart")])
def test_a_value_compose_cannot_read_is_refused_before_compose_prints_it(cli, docker, project: Path,
                                                                           args: tuple[str, ...]) -> None:
    """Issue 21.4: a streamed command (up, build…) lets compose print "Invalid template: "<value>"" straight to
    the terminal, where nothing can mask it (seen on the real compose 2.40). Refused first: exit 2, names only."""
    (project / ".env").write_text("SECRET_KEY=" + "5e" * 32 + "\nMAIL_PASSWORD=${UNCLOSED-hunter2-mail\n"
                                  "SMTP_PASS='${literal-pa55'\nAPI_AUTH=${HOME:-api-auth-x}\n")
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert "hunter2" not in result.output and "pa55" not in result.output and "api-auth-x" not in result.output
    assert result.stderr.splitlines()[0] == (
        "Error: .env: compose cannot read the value of MAIL_PASSWORD (an unclosed or malformed '${': "
        "compose would print the value in its error)")
    assert not [c for c in docker.calls if "compose" in c], docker.calls  # compose never ran
