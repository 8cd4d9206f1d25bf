"""The project lock: one state-changing montero command at a time per project folder.

Commands that change the stack or its data (backup, restore, backups prune, up, down, start,
stop, restart, scale, deploy) hold it for their whole run. A second one waits a little
(MONTERO_LOCK_WAIT seconds, default 10), then refuses with who holds it, instead of failing
halfway with a container id.

The lock is `flock(2)` on `.montero/lock` in the project root: the kernel drops it when its
holder dies, even by `kill -9`, so a stale lock cannot exist. The holder writes its pid,
command and start time into the same file for the refusal message. One folder holds one
`./data`, so the lock is per project folder, not per compose project name. Within one
process the lock is re-entrant (a restore takes its safety backup under the same lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from montero_ops.errors import ProjectBusy
from montero_ops.project import Project

DEFAULT_WAIT = 10.0
_held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, depth) held by this process


@dataclass(frozen=True)
class Holder:
    pid: int
    command: str
    started_at: str


def busy(holder: Holder | None, waited: float) -> ProjectBusy:
    what = (f"a {holder.command} is running (pid {holder.pid}, started at {holder.started_at})" if holder
            else "another montero command is running on this project")
    return ProjectBusy(f"{what}; waited {waited:.0f} s, nothing was changed",
                       hint="run this again when it has finished (MONTERO_LOCK_WAIT=SECONDS waits longer)")


def state_dir(project: Project) -> Path:
    """`.montero/` in the project root: the lock and the restore journal."""
    return project.root / ".montero"


def lock_path(project: Project) -> Path:
    return state_dir(project) / "lock"


def holder(project: Project) -> Holder | None:
    """Who holds the lock now (None when nobody does)."""
    path = lock_path(project)
    if path in _held:
        return _read_holder(path)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_holder(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
        return Holder(int(data["pid"]), str(data["command"]), str(data["started_at"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


@contextlib.contextmanager
def project_lock(
    project: Project,
    command: str,
    wait: float | None = None,
    on_wait: Callable[[Holder | None], None] = lambda _h: None,
) -> Iterator[None]:
    """Hold the project lock for the block; raise ProjectBusy when it stays taken for `wait` s."""
    path = lock_path(project)
    if path in _held:
        fd, depth = _held[path]
        _held[path] = (fd, depth + 1)
        try:
            yield
        finally:
            _held[path] = (fd, _held[path][1] - 1)
        return
    if wait is None:
        wait = float(os.environ.get("MONTERO_LOCK_WAIT") or DEFAULT_WAIT)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, wait, on_wait)
        stamp = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "command": command, "started_at": stamp}).encode(), 0)
        _held[path] = (fd, 1)
        try:
            yield
        finally:
            del _held[path]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # nobody holds it: no stale pid to read
    finally:
        os.close(fd)  # closing drops the flock


def _acquire(fd: int, path: Path, wait: float, on_wait: Callable[[Holder | None], None]) -> None:
    start = time.monotonic()
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        waited = time.monotonic() - start
        if waited >= wait:
            raise busy(_read_holder(path), waited)
        if not told:
            on_wait(_read_holder(path))
            told = True
        time.sleep(0.1)
