"""`montero --help`, `--version` and `ps` stay fast: no python-on-whales, no docker SDK.

Checked in a fresh interpreter, since this test session has imported them already.
(pydantic is not checked: Typer >= 0.2x imports it itself when it parses a subcommand's options.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

RUNNER = """
import sys
from typer.testing import CliRunner
from montero_ops.cli import app
{setup}
result = CliRunner().invoke(app, {args!r})
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('python_on_whales', 'docker'))
print('EXIT', result.exit_code)
print('HEAVY', heavy)
"""

FAKE_ENGINE = """
import montero_ops.engine as engine
class Fake:
    def __init__(self, *a, **k): pass
    def ping(self): pass
    def project_containers(self, project, all=True): return []
engine.Engine = Fake
import montero_ops.services.status as status
status.defined_services = lambda project: ['app']
import subprocess
subprocess.call = lambda *a, **k: 0
"""


def run(args: list[str], setup: str = "", cwd: Path | None = None) -> str:
    code = RUNNER.format(setup=setup, args=args)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, check=True,
                          env={"PATH": "/usr/bin:/bin", "COLUMNS": "100", "NO_COLOR": "1",
                               "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    return done.stdout


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["up", "--help"], ["migrate", "--help"]])
def test_help_and_version_do_not_import_docker_libraries(args: list[str]) -> None:
    out = run(args)
    assert "EXIT 0" in out
    assert "HEAVY []" in out


def test_ps_health_logs_do_not_import_python_on_whales(project: Path) -> None:
    for args in (["ps"], ["health"], ["logs", "app", "--tail", "5"]):
        out = run(args, FAKE_ENGINE, cwd=project)
        assert "HEAVY []" in out, out
