"""Who holds a SQLite database open, asked of the kernel rather than of Docker.

A restore replaces the database file by a rename. A process that still has the old file
open (a gunicorn worker Docker cannot tell us about, because Docker is unreachable or the
app runs outside it) keeps writing into the deleted inode: every write it acknowledges after
the swap is lost at its next restart. So before a swap montero must *prove* nobody holds the
file, the -wal or the -shm:

1. /proc/<pid>/fd of every process (containers' processes are visible from the host);
2. where some process cannot be inspected (not root), SQLite's own dead-man-switch lock: every
   connection in WAL mode holds a shared fcntl lock on byte 128 of the -shm file for as long as
   it is open, so an exclusive lock on that byte succeeds only when no connection is open.

Only when one of the two proves the file is free may a restore go on.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
SHM_DMS_BYTE = 128  # sqlite3 os_unix.c: UNIX_SHM_DMS = UNIX_SHM_BASE (120) + SQLITE_SHM_NLOCK (8)


@dataclass
class Holders:
    """Processes that have one of the database's files open, and what could not be inspected."""

    processes: list[tuple[int, str]] = field(default_factory=list)  # (pid, command line)
    unreadable: int = 0  # processes whose open files this user may not read
    shm_free: bool | None = None  # the -shm dead-man-switch lock: None = no -shm file

    @property
    def proven_free(self) -> bool:
        if self.processes:
            return False
        return self.unreadable == 0 or self.shm_free is True

    def describe(self) -> str:
        if self.processes:
            shown = ", ".join(f"pid {pid} ({cmd[:60]})" for pid, cmd in self.processes[:3])
            more = f" and {len(self.processes) - 3} more" if len(self.processes) > 3 else ""
            return f"{shown}{more}"
        return f"{self.unreadable} processes whose open files cannot be read by this user"


def database_files(db: Path) -> set[tuple[int, int]]:
    """(device, inode) of the database and its companions: a process in a container sees the
    bind-mounted file under another path (/app/data/…), but it is the same inode."""
    found: set[tuple[int, int]] = set()
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            st = os.stat(str(db) + suffix)
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return found


def _cmdline(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    return " ".join(raw.replace(b"\0", b" ").decode(errors="replace").split()) or "?"


def _shm_free(db: Path) -> bool | None:
    shm = Path(str(db) + "-shm")
    if not shm.exists():
        return None
    try:
        fd = os.open(shm, os.O_RDWR)
    except OSError:
        return False
    try:
        # lockf is fcntl(F_SETLK) on a byte range: a write lock on the DMS byte is refused
        # while any connection holds it shared.
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, SHM_DMS_BYTE)
        except OSError:
            return False
        fcntl.lockf(fd, fcntl.LOCK_UN, 1, SHM_DMS_BYTE)
        return True
    finally:
        os.close(fd)


def find_holders(db: Path) -> Holders:
    """Every process but this one that has DB (or its -wal/-shm/-journal) open."""
    wanted = database_files(db)
    found = Holders()
    me = os.getpid()
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except FileNotFoundError:
            continue  # the process ended
        except PermissionError:
            found.unreadable += 1
            continue
        for fd in fds:
            try:
                if os.readlink(fd).startswith(("socket:", "pipe:", "anon_inode:", "/dev/")):
                    continue
                st = os.stat(fd)  # follows the magic link to the open file itself
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in wanted:
                found.processes.append((int(entry.name), _cmdline(int(entry.name))))
                break
    if found.unreadable and not found.processes:
        found.shm_free = _shm_free(db)
    return found


def require_unheld(db: Path, why: str) -> None:
    """Raise unless the kernel proves no other process has DB open (see the module docstring)."""
    from montero_ops.errors import CommandFailed

    if not db.exists():
        return
    holders = find_holders(db)
    if holders.proven_free:
        return
    if holders.processes:
        raise CommandFailed(
            f"{why}: {db.name} is open in {holders.describe()}; replacing it now would lose every write "
            "they acknowledge after the swap, so nothing was changed",
            hint="stop what holds it (`montero stop app`, or make Docker reachable so montero can), then run it again",
        )
    raise CommandFailed(
        f"{why}: cannot prove that no process has {db.name} open ({holders.describe()}), so nothing was changed",
        hint="run it as root, or make Docker reachable so montero can stop the app itself",
    )
