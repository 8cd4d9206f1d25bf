"""The project lock (services/lock.py): one holder, re-entrant in-process, gone with a kill -9."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from montero_ops.errors import ExitCode, ProjectBusy
from montero_ops.project import find_project
from montero_ops.services.lock import holder, project_lock

HOLD = """
import sys
from montero_ops.project import find_project
from montero_ops.services.lock import project_lock
with project_lock(find_project(sys.argv[1]), "restore"):
    print("held", flush=True)
    sys.stdin.readline()
"""


def hold(root: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_busy_names_the_holder_and_a_kill_9_frees_it(project: Path) -> None:
    proj = find_project(project)
    proc = hold(project)
    try:
        found = holder(proj)
        assert found is not None and (found.pid, found.command) == (proc.pid, "restore")
        started = time.monotonic()
        with pytest.raises(ProjectBusy) as caught, project_lock(proj, "backup", wait=0.5):
            pytest.fail("must not get the lock")
        assert 0.5 <= time.monotonic() - started < 3
        assert caught.value.exit_code == ExitCode.BUSY == 6
        assert re.fullmatch(rf"a restore is running \(pid {proc.pid}, started at {found.started_at}\); "
                            r"waited [01] s, nothing was changed", caught.value.message), caught.value.message
        proc.send_signal(signal.SIGKILL)  # the kernel drops the flock with its holder: no stale lock
        proc.wait()
        assert holder(proj) is None
        with project_lock(proj, "backup", wait=0):
            assert holder(proj) is not None
    finally:
        proc.kill()
        proc.wait()


def test_reentrant_within_one_process_and_released_after(project: Path) -> None:
    proj = find_project(project)
    with project_lock(proj, "restore", wait=0):
        with project_lock(proj, "backup", wait=0):  # the restore's safety backup
            found = holder(proj)
            assert found is not None and found.command == "restore"
        assert holder(proj) is not None
    assert holder(proj) is None
    proc = hold(project)  # and another process can take it now
    proc.kill()
    proc.wait()
