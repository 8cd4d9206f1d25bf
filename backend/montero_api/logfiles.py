"""The shared log file: every worker appends, exactly one process rotates.

Why (issue 21 point 1): each gunicorn worker used to run its own RotatingFileHandler on the one
`montero-api.log`. Past 10 MiB under load every worker decided to rotate within the same second,
each renaming the chain again (six rotations in a second: ten megabytes of history gone), and the
workers that lost the race kept writing into files that had been renamed or deleted.

Now:
- workers (and any `flask` command) append with `SharedFileHandler`: it never rotates; before each
  record it checks that the path still names the file it holds open and reopens it if not
  (logging.handlers.WatchedFileHandler). A line written between a rotation and the reopen lands in
  the file that was just renamed to `.1`: it is kept, not lost;
- the gunicorn master runs `Rotator` (one thread, gunicorn.conf.py `when_ready`): once a second it
  rotates when the file has passed LOG_MAX_BYTES. Replicas share ./logs, so the rotation itself
  runs under an exclusive flock on `.montero-api.log.lock` in the same folder, and the size is read
  again under the lock: one replica rotates, the others then see a small file;
- files are created 0640 (owner and group only: logs hold addresses and e-mail addresses).
"""

from __future__ import annotations

import fcntl
import logging.handlers
import os
import sys
import threading
from pathlib import Path

LOG_FILE = "montero-api.log"
FILE_MODE = 0o640


def _open_0640(path: str, flags: int) -> int:
    fd = os.open(path, flags, FILE_MODE)
    # A file created before this version (0644), or under a lax umask: tighten it.
    try:
        if os.fstat(fd).st_mode & 0o7777 & ~FILE_MODE:
            os.fchmod(fd, FILE_MODE)
    except OSError:
        pass  # not ours to change (another uid): keep logging
    return fd


class SharedFileHandler(logging.handlers.WatchedFileHandler):
    """Append-only handler for a file that another process rotates (see the module docstring)."""

    def _open(self):  # type: ignore[no-untyped-def]  # the stdlib's signature is untyped
        return open(self.baseFilename, self.mode, encoding=self.encoding, errors=self.errors, opener=_open_0640)


def rotated_name(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.{index}")


def rotate_if_needed(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate `path` (-> .1 -> ... -> .N, the oldest dropped) when it is larger than max_bytes.

    True when this call rotated. Safe to call from several processes at once (flock).
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    lock_path = path.with_name(f".{path.name}.lock")
    with open(lock_path, "a", opener=_open_0640) as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            if path.stat().st_size <= max_bytes:
                return False  # another replica rotated while this one waited for the lock
        except FileNotFoundError:
            return False
        if backups <= 0:
            os.truncate(path, 0)  # no history wanted: start over in place
            return True
        for index in range(backups - 1, 0, -1):
            older = rotated_name(path, index)
            if older.exists():
                os.replace(older, rotated_name(path, index + 1))
        # Writers still hold this inode open: what they write until they reopen lands in `.1`.
        os.replace(path, rotated_name(path, 1))
        return True


class Rotator(threading.Thread):
    """The one rotating writer: a daemon thread in the gunicorn master."""

    def __init__(self, path: Path, max_bytes: int, backups: int, interval: float = 1.0) -> None:
        super().__init__(name="montero-log-rotator", daemon=True)
        self.path, self.max_bytes, self.backups, self.interval = path, max_bytes, backups, interval
        self.stopped = threading.Event()
        self.rotations = 0

    def run(self) -> None:
        for index in range(1, self.backups + 1):  # history written before 0640 existed
            _tighten(rotated_name(self.path, index))
        _tighten(self.path)
        while not self.stopped.wait(self.interval):
            try:
                if rotate_if_needed(self.path, self.max_bytes, self.backups):
                    self.rotations += 1
            except OSError as exc:  # a full or read-only disk must not kill the master
                print(f"montero_api: log rotation of {self.path} failed: {exc}", file=sys.stderr, flush=True)

    def stop(self) -> None:
        self.stopped.set()


def _tighten(path: Path) -> None:
    try:
        if path.stat().st_mode & 0o7777 & ~FILE_MODE:
            path.chmod(FILE_MODE)
    except OSError:
        pass
