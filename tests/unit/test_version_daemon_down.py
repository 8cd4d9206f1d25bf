"""Issue 22 point 10: `montero version` with only the daemon unreachable still shows the client."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker command (scripts/setup.sh installs it)")
def test_version_names_the_client_when_the_daemon_is_unreachable(tmp_path: Path) -> None:
    env = dict(os.environ, DOCKER_HOST=f"unix://{tmp_path}/nonexistent.sock", NO_COLOR="1")
    done = subprocess.run([str(Path(sys.executable).with_name("montero")), "version"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.fullmatch(r"Docker client:  \d+\.\d+\.\d+\S*", lines[1]), lines
    assert lines[2] == "Docker server:  not reachable"
