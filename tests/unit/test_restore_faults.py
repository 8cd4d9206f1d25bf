"""Issue 22 points 2, 4 and 11: real faults injected into the real `montero` process.

The CLI runs in a subprocess (Docker unreachable: the restore works on the SQLite file, as
when the stack is down). A small wrapper runs montero's own entry point and, at a named step
of the restore journal, either `kill -9`s its own process, sends itself SIGINT, or pauses so a
second real `montero` command can run against it. Nothing in montero is faked.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_backup_support import make_db, make_migrations

from montero_ops.services.backups import sqlite_db

# argv: ACTION STEP OCCURRENCE montero-args...  ACTION: kill | sigint | pause
WRAPPER = r"""
import os, signal, sys, time
from montero_ops.services.backups import create, journal

action, at, occurrence = sys.argv[1], sys.argv[2], int(sys.argv[3])
# A terminal's Ctrl-C: started from a background job (`cmd &` in a script), SIGINT arrives
# ignored and Python keeps it so; the user at a terminal always has the default handler.
signal.signal(signal.SIGINT, signal.default_int_handler)
seen = {}

def fault(name):
    seen[name] = seen.get(name, 0) + 1
    if name != at or seen[name] != occurrence:
        return
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "sigint":
        os.kill(os.getpid(), signal.SIGINT)
        # Python runs the handler at its next check, which under load can be a few steps later
        # (past the step under test). Wait here, in an interruptible sleep, until it has run, so
        # KeyboardInterrupt is raised at exactly this step.
        for _ in range(3000):
            time.sleep(0.01)
        print("SIGINT never arrived", file=sys.stderr)
        os._exit(99)
    else:
        print(f"paused at {name}", flush=True)
        sys.stdin.readline()

real_step, real_staged = journal.RestoreJournal.step, journal.RestoreJournal.staged
def patched_step(self, name, **changes):
    real_step(self, name, **changes)
    fault(name)
def patched_staged(self, path, label):
    real_staged(self, path, label)
    fault("staged")
journal.RestoreJournal.step, journal.RestoreJournal.staged = patched_step, patched_staged
real_check = create.sqlite_db.integrity_check
def check(path):
    if path.parent.name.startswith(".partial-"):
        fault("safety-copy")  # the safety backup's copy exists, not yet checked or renamed
    return real_check(path)
create.sqlite_db.integrity_check = check

from montero_ops.cli import app
sys.argv = ["montero", *sys.argv[4:]]
app(prog_name="montero")
"""


def env_for(root: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, DOCKER_HOST=f"unix://{root}/nonexistent.sock", NO_COLOR="1", COLUMNS="300", **extra)
    env.pop("MONTERO_BACKUP_DIR", None)
    return env


def montero(root: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("montero")), *args], cwd=root, env=env_for(root, **extra),
                          check=False, capture_output=True, text=True, timeout=120)


def faulty(root: Path, action: str, step: str, occurrence: int, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", WRAPPER, action, step, str(occurrence), *args], cwd=root,
                            env=env_for(root), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error: ")]


@pytest.fixture
def shop(project: Path) -> Iterator[Path]:
    make_migrations(project)
    make_db(project / "data" / "mi_sistema.db", rows=3000, payload_size=400)
    yield project


@pytest.fixture
def backed_up(shop: Path) -> dict[str, object]:
    """A backup of the original data, then the live data changed: old != backup's."""
    db = shop / "data" / "mi_sistema.db"
    made = montero(shop, "backup", "sqlite", "--json")
    assert made.returncode == 0, made.stderr
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders WHERE id % 3 = 0;"], check=True)
    return {"id": json.loads(made.stdout)["id"], "backup_sums": sqlite_db.table_checksums(
        shop / "backups" / json.loads(made.stdout)["id"] / "mi_sistema.db"), "old_sums": sqlite_db.table_checksums(db)}


def leftovers(root: Path) -> list[str]:
    data = [p.name for p in (root / "data").iterdir() if ".restore-" in p.name]
    partial = [p.name for p in (root / "backups").iterdir() if p.name.startswith(".partial-")]
    return data + partial


# (fault point, occurrence, the journal's step then, what the database must be after a kill -9 there)
KILLS = [
    ("safety-backup", 1, "safety-backup", "old"),  # journal written, nothing else done
    ("safety-copy", 1, "safety-backup", "old"),  # mid safety backup: a .partial- folder is left
    ("safety-backup", 2, "safety-backup", "old"),  # safety backup complete
    ("staged", 1, "sqlite", "old"),  # the staged copy is complete, not renamed: a .restore- file is left
    ("sqlite", 2, "sqlite", "backup"),  # right after the rename
]


@pytest.mark.parametrize(("step", "occurrence", "journal_step", "expected"), KILLS)
def test_kill_9_at_a_step_boundary_is_named_cleaned_and_fixable(
        shop: Path, backed_up: dict[str, object], step: str, occurrence: int, journal_step: str,
        expected: str) -> None:
    db = shop / "data" / "mi_sistema.db"
    backup_id = str(backed_up["id"])
    proc = faulty(shop, "kill", step, occurrence, "restore", "sqlite", backup_id, "--yes")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, stderr
    assert (shop / ".montero" / "restore.json").is_file()
    sums = sqlite_db.table_checksums(db)
    assert sums == backed_up["old_sums" if expected == "old" else "backup_sums"]
    assert sqlite_db.integrity_check(db) == "ok"
    left = leftovers(shop)
    if step == "staged":
        assert any(".restore-" in name for name in left), left
    if step == "safety-copy":
        assert any(name.startswith(".partial-") for name in left), left

    # The next state-changing command names it, says old or new, removes the leftovers.
    nxt = montero(shop, "backup", "sqlite")
    assert nxt.returncode == 0, nxt.stderr
    lines = [line[2:] for line in nxt.stderr.splitlines() if line.startswith("! ")]
    assert lines[0].startswith(f"an interrupted restore: sqlite from {backup_id} (pid {proc.pid}, started at ")
    assert lines[0].endswith(f"stopped at step '{journal_step}'")
    if expected == "old":
        assert "the database is the old one (unchanged)" in lines
        assert lines[-1].startswith("fix: montero up   # the data is unchanged; or restore it after all: "
                                    f"montero restore sqlite {backup_id} --yes")
    else:
        assert f"the database is the backup's ({backup_id}, checksum as staged)" in lines
        assert re.match(rf"fix: montero restore sqlite {backup_id} --yes   # finishes the restore; "
                        r"to undo: montero restore sqlite \S+_sqlite(-\d+)? --yes$", lines[-1]), lines[-1]
    if left:
        assert any(line.startswith("removed its leftovers: ") for line in lines), lines
    assert leftovers(shop) == []
    # The restore it names finishes it (after `montero up` there would be nothing to finish either).
    done = montero(shop, "restore", "sqlite", backup_id, "--yes")
    assert done.returncode == 0, done.stderr
    assert sqlite_db.table_checksums(db) == backed_up["backup_sums"]
    assert not (shop / ".montero" / "restore.json").exists()
    again = montero(shop, "backup", "sqlite")
    assert again.returncode == 0 and "interrupted" not in again.stderr, again.stderr


def test_doctor_names_an_interrupted_restore(shop: Path, backed_up: dict[str, object]) -> None:
    proc = faulty(shop, "kill", "sqlite", 2, "restore", "sqlite", str(backed_up["id"]), "--yes")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    report = montero(shop, "doctor", "--json")
    findings = {f["id"]: f for f in json.loads(report.stdout)}
    found = findings["data.restore"]
    assert found["status"] == "fail"
    assert found["message"].startswith(f"an interrupted restore: sqlite from {backed_up['id']} (pid {proc.pid}")
    assert "the database is the backup's" in found["message"]
    assert found["fix"].startswith(f"montero restore sqlite {backed_up['id']} --yes")


def test_a_second_command_is_refused_while_a_restore_runs_then_both_are_fine(
        shop: Path, backed_up: dict[str, object]) -> None:
    """A real concurrent second command: refused with who holds the lock, exit 6, nothing left."""
    proc = faulty(shop, "pause", "sqlite", 1, "restore", "sqlite", str(backed_up["id"]), "--yes")
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "paused at sqlite\n"
        before = sorted(p.name for p in (shop / "backups").iterdir())
        for args in (("backup", "sqlite"), ("restore", "sqlite", str(backed_up["id"]), "--yes"),
                     ("backups", "prune", "--keep", "0", "--yes")):
            started = time.monotonic()
            refused = montero(shop, *args, MONTERO_LOCK_WAIT="1")
            assert refused.returncode == 6, refused.stderr
            assert time.monotonic() - started < 15
            line = errors(refused.stderr)
            assert len(line) == 1 and re.fullmatch(
                rf"Error: a restore is running \(pid {proc.pid}, started at \d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\dZ\); "
                r"waited 1 s, nothing was changed", line[0]), refused.stderr
            assert "waiting for the restore (pid" in refused.stderr
        assert sorted(p.name for p in (shop / "backups").iterdir()) == before
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert sqlite_db.table_checksums(shop / "data" / "mi_sistema.db") == backed_up["backup_sums"]
    assert not (shop / ".montero" / "restore.json").exists()


def test_a_second_command_waits_briefly_for_the_lock(shop: Path, backed_up: dict[str, object]) -> None:
    proc = faulty(shop, "pause", "sqlite", 1, "restore", "sqlite", str(backed_up["id"]), "--yes")
    second: subprocess.Popen[str] | None = None
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "paused at sqlite\n"
        second = subprocess.Popen([str(Path(sys.executable).with_name("montero")), "backup", "sqlite"], cwd=shop,
                                  env=env_for(shop, MONTERO_LOCK_WAIT="60"), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        # Wait for what the second one says when it starts waiting (a fixed sleep flaked under
        # load: montero had not even imported when the restore was let go).
        assert second.stderr is not None
        said: list[str] = []
        while not said or "waiting for the" not in said[-1]:
            line = second.stderr.readline()
            assert line, f"the second command ended without waiting: {said}"
            said.append(line)
        assert said[-1].strip() == f"waiting for the restore (pid {proc.pid}) to finish", said
        assert second.poll() is None
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=120) == 0
        _, err = second.communicate(timeout=120)
    finally:
        proc.kill()
        if second is not None:
            second.kill()
    assert second.returncode == 0, err
    assert "backup " in err and "integrity ok" in err


def test_sigint_during_the_swap_rolls_back_and_exits_130(shop: Path, backed_up: dict[str, object]) -> None:
    db = shop / "data" / "mi_sistema.db"
    proc = faulty(shop, "sigint", "staged", 1, "restore", "sqlite", str(backed_up["id"]), "--yes")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    line = errors(stderr)
    assert len(line) == 1 and re.fullmatch(
        r"Error: restore failed: interrupted \(Ctrl-C\); the data from before the restore was put back "
        r"\(safety backup \S+_sqlite(-\d+)?\)", line[0]), stderr
    assert sqlite_db.table_checksums(db) == backed_up["old_sums"]
    assert leftovers(shop) == [] and not (shop / ".montero" / "restore.json").exists()
    assert "docker compose" not in stderr and "Traceback" not in stderr


def test_sigint_during_the_safety_backup_changes_nothing(shop: Path, backed_up: dict[str, object]) -> None:
    db = shop / "data" / "mi_sistema.db"
    before = sorted(p.name for p in (shop / "backups").iterdir())
    proc = faulty(shop, "sigint", "safety-copy", 1, "restore", "sqlite", str(backed_up["id"]), "--yes")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert errors(stderr) == ["Error: restore interrupted (Ctrl-C) during the safety backup: nothing was changed"]
    assert sqlite_db.table_checksums(db) == backed_up["old_sums"]
    assert sorted(p.name for p in (shop / "backups").iterdir()) == before
    assert leftovers(shop) == [] and not (shop / ".montero" / "restore.json").exists()


def test_sigint_during_a_backup_says_nothing_was_kept_and_exits_130(shop: Path, backed_up: dict[str, object]) -> None:
    """Issue 22 point 3 for `backup`: Ctrl-C while the copy is checked said only 'Interrupted.'."""
    db = shop / "data" / "mi_sistema.db"
    before = sorted(p.name for p in (shop / "backups").iterdir())
    proc = faulty(shop, "sigint", "safety-copy", 1, "backup", "sqlite")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert errors(stderr) == [("Error: backup interrupted (Ctrl-C): nothing was kept; the live data and the stack "
                               "were not touched")], stderr
    assert sqlite_db.table_checksums(db) == backed_up["old_sums"]
    assert sorted(p.name for p in (shop / "backups").iterdir()) == before
    assert leftovers(shop) == [] and "Traceback" not in stderr


def test_a_killed_backup_is_counted_by_backups_list_and_doctor(shop: Path, backed_up: dict[str, object]) -> None:
    """Issue 22 point 10: `kill -9` of a real backup mid-copy leaves a .partial- folder that no
    command showed; `backups list` and doctor's data.unfinished count it and its size."""
    proc = faulty(shop, "kill", "safety-copy", 1, "backup", "sqlite")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    [partial] = [p for p in (shop / "backups").iterdir() if p.name.startswith(".partial-")]
    size_mb = sum(f.stat().st_size for f in partial.rglob("*") if f.is_file()) / 1024 / 1024
    assert size_mb > 0.5
    listed = montero(shop, "backups", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stderr.splitlines()[0].startswith(f"1 unfinished backup folder(s), {size_mb:.1f} MB: {partial.name} ")
    findings = {f["id"]: f for f in json.loads(montero(shop, "doctor", "--json").stdout)}
    found = findings["data.unfinished"]
    assert found["status"] == "warn", found
    assert found["message"].startswith(f"1 unfinished backup folder(s) in {shop / 'backups'} ({size_mb:.1f} MB)"), found
