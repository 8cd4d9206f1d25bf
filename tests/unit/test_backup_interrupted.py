"""Kill the restore's file swap at random points: the database is exactly old or exactly new."""

from __future__ import annotations

import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_backup_support import copy_db, make_db

from montero_ops.services.backups import sqlite_db
from montero_ops.services.backups.manifest import sha256_file

SWAP = """
import sys
from pathlib import Path
from montero_ops.services.backups import sqlite_db
target, source, compressed, sha = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
staged = sqlite_db.stage_copy(source, target, compressed, sha256=sha, journal_mode="wal")
sqlite_db.swap_in(staged, target)
print("done", flush=True)
"""

WRITE_AND_CRASH = """
import os, sqlite3, sys
con = sqlite3.connect(sys.argv[1])
con.execute("PRAGMA wal_autocheckpoint=0")
with con:
    con.execute("DELETE FROM orders WHERE id % 2 = 0")
    con.execute("INSERT INTO orders (payload, digest) VALUES ('only-in-the-wal', 'x')")
os._exit(0)  # like a crashed app: the last changes live only in the -wal file
"""


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | dict[str, str]]:
    base = tmp_path_factory.mktemp("interrupt")
    new = make_db(base / "new.db", rows=6000, payload_size=400)
    con = sqlite3.connect(new)
    con.execute("PRAGMA journal_mode=DELETE")  # as montero stores a backup: one self-contained file
    con.close()
    sha = sha256_file(new)
    gz = base / "new.db.gz"
    sqlite_db.gzip_file(new, gz)
    old = make_db(base / "old" / "mi_sistema.db", rows=4000, revision="aaa1", payload_size=300)
    subprocess.run([sys.executable, "-c", WRITE_AND_CRASH, str(old)], check=True)
    assert Path(f"{old}-wal").stat().st_size > 0  # the old state really depends on its WAL
    probe = base / "probe" / "mi_sistema.db"
    probe.parent.mkdir()
    copy_db(old, probe)
    return {"new": new, "gz": gz, "old": old, "sha": sha,
            "old_sums": sqlite_db.table_checksums(probe), "new_sums": sqlite_db.table_checksums(new)}


@pytest.mark.parametrize("compressed", [False, True])
def test_killed_swap_leaves_old_or_new(templates: dict, tmp_path: Path, compressed: bool) -> None:
    source = templates["gz"] if compressed else templates["new"]
    # How long an uninterrupted swap takes here, so kill times cover all of it.
    start = time.monotonic()
    trial = tmp_path / "timing"
    trial.mkdir()
    copy_db(templates["old"], trial / "mi_sistema.db")
    argv = ["1" if compressed else "0", str(templates["sha"])]
    subprocess.run([sys.executable, "-c", SWAP, str(trial / "mi_sistema.db"), str(source), *argv],
                   check=True, capture_output=True)
    full = time.monotonic() - start
    rng = random.Random(5 + compressed)
    outcomes = {"old": 0, "new": 0}
    for n in range(60):
        if n >= 30 and outcomes["old"] and outcomes["new"]:
            break
        if n < 30:
            delay = rng.uniform(0.0, full * 1.1)
        elif not outcomes["new"]:
            # The machine got slower than the timing run (a loaded CI box): aim later and later.
            delay = rng.uniform(full, full * 2 ** ((n - 30) // 5 + 1))
        else:
            delay = rng.uniform(0.0, full * 0.5)
        folder = tmp_path / f"t{n}"
        folder.mkdir()
        target = folder / "mi_sistema.db"
        copy_db(templates["old"], target)
        proc = subprocess.Popen([sys.executable, "-c", SWAP, str(target), str(source), *argv],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert sqlite_db.integrity_check(target) == "ok", f"trial {n}"
        sums = sqlite_db.table_checksums(target)
        if sums == templates["old_sums"]:
            outcomes["old"] += 1
        elif sums == templates["new_sums"]:
            outcomes["new"] += 1
        else:
            pytest.fail(f"trial {n}: the database is neither the old nor the new one")
        shutil.rmtree(folder)
    # Both outcomes occurred: the kills really landed before and after the rename (every trial,
    # including the extra ones a slow machine needs, was checked to be exactly old or new).
    assert outcomes["old"] > 0 and outcomes["new"] > 0, outcomes
