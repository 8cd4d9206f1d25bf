"""Issue 22, point 1: a full backups disk, for real (a small tmpfs mounted as the backups folder).

Before: 'cannot read …/mi_sistema.db: database or disk is full' (the source was fine) or
'unexpected error: OSError: [Errno 28]'. Now: a precheck that says needed and free, and ENOSPC at
any later step is one line naming the full folder; nothing partial is left or listed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_backup_cli import shop  # noqa: F401  (fixture)
from test_backup_support import make_db
from typer.testing import Result

from montero_ops.services.backups import create, restore, sqlite_db


def bigger_db(root: Path, rows: int) -> None:
    db = root / "data" / "mi_sistema.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    make_db(db, rows=rows, payload_size=800)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("mounting a tmpfs needs root", pytrace=False)
        pytest.skip("mounting a tmpfs needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_precheck_says_needed_and_free(cli: Callable[..., Result], shop: Path, small_disk: Path) -> None:  # noqa: F811
    bigger_db(shop, 6000)  # ~5 MB + 8 MB margin > 12 MB
    result = cli("backup", "sqlite", "--dir", str(small_disk))
    assert result.exit_code == 1
    line = result.stderr.splitlines()[0]
    assert line.startswith(f"Error: not enough free space in {small_disk} for the SQLite backup: need ")
    assert " MB free" in line
    assert list(small_disk.iterdir()) == []


def test_disk_full_mid_copy_names_the_folder_and_leaves_nothing(
        cli: Callable[..., Result], shop: Path, small_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    bigger_db(shop, 3000)  # ~2.5 MB: passes the precheck
    real = create.require_space

    def then_fill(folder: Path, needed: int, what: str) -> None:
        real(folder, needed, what)
        # Someone else fills the disk right after the precheck: the copy hits ENOSPC for real.
        subprocess.run(["dd", "if=/dev/zero", f"of={small_disk}/filler", "bs=1M", "count=11"],
                       capture_output=True, check=False)

    monkeypatch.setattr(create, "require_space", then_fill)
    result = cli("backup", "sqlite", "--dir", str(small_disk))
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines()[-2] == (
        f"Error: the backups folder {small_disk} is full (no space left on its disk); nothing was kept")
    assert "cannot read" not in result.stderr and "unexpected error" not in result.stderr
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]  # no .partial-*, no backup
    listed = cli("backups", "list", "--dir", str(small_disk), "--json")
    assert listed.exit_code == 0 and listed.stdout.strip() == "[]"


# -- restore: the data folder is the one that is full ---------------------------------------------

@pytest.fixture
def data_on_small_disk(shop: Path, small_disk: Path) -> Path:  # noqa: F811
    """./data is a link to the 12 MB tmpfs: the restore stages its copy there."""
    data = shop / "data"
    for item in data.iterdir():
        shutil.move(str(item), str(small_disk / item.name))
    data.rmdir()
    data.symlink_to(small_disk)
    return small_disk


def test_restore_precheck_says_needed_and_free(cli: Callable[..., Result], shop: Path,  # noqa: F811
                                               data_on_small_disk: Path) -> None:
    backup_id = json.loads(cli("backup", "sqlite", "--json").stdout)["id"]
    subprocess.run(["dd", "if=/dev/zero", f"of={data_on_small_disk}/filler", "bs=1M", "count=6"],
                   capture_output=True, check=True)
    before = sqlite_db.table_checksums(shop / "data" / "mi_sistema.db")
    result = cli("restore", "sqlite", backup_id, "--yes")
    assert result.exit_code == 1, result.stderr
    line = result.stderr.splitlines()[0]
    assert line.startswith(f"Error: not enough free space in {shop / 'data'} for the restored database: need "), line
    assert line.endswith(" MB free"), line
    assert result.stderr.splitlines()[1].strip() == f"Fix: free some space in {shop / 'data'} (nothing was changed)"
    assert sqlite_db.table_checksums(shop / "data" / "mi_sistema.db") == before
    assert sorted(p.name for p in (shop / "backups").iterdir()) == [backup_id]  # no safety backup either


def test_disk_full_while_staging_a_restore_changes_nothing_and_says_so(
        cli: Callable[..., Result], shop: Path, data_on_small_disk: Path,  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: '[Errno 28] No space left on device: …restore-N.tmp' (or, when the rollback's copy
    hit the same full disk, 'putting the previous data back ALSO failed' with the database never
    touched), and the partial staged copy stayed in ./data."""
    bigger_db(shop, 1000)  # ~0.9 MB: passes the precheck (0.9 + 8 MB margin < 12 - 0.9 MB)
    db = shop / "data" / "mi_sistema.db"
    backup_id = json.loads(cli("backup", "sqlite", "--json").stdout)["id"]
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders WHERE id % 2 = 0;"], check=True)
    before = sqlite_db.table_checksums(db)
    real = restore.require_space

    def then_fill(folder: Path, needed: int, what: str, hint: str | None = None) -> None:
        real(folder, needed, what, hint)
        if what == "the restored database" and not (data_on_small_disk / "filler").exists() and not filled:
            filled.append(True)
            # Something else fills ./data's disk right after the precheck: staging hits ENOSPC for real.
            free = shutil.disk_usage(data_on_small_disk).free
            subprocess.run(["dd", "if=/dev/zero", f"of={data_on_small_disk}/filler", "bs=64k",
                            f"count={max(free // 65536 - 8, 1)}"], capture_output=True, check=False)

    filled: list[bool] = []
    monkeypatch.setattr(restore, "require_space", then_fill)
    result = cli("restore", "sqlite", backup_id, "--yes")
    assert result.exit_code == 1, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")]
    assert errors == [(f"Error: restore failed: the folder {shop / 'data'} is full (no space left on its disk for a "
                       "copy of the restored database); the data was not changed")], result.stderr
    assert "ALSO failed" not in result.stderr and "Errno" not in result.stderr
    assert sqlite_db.table_checksums(db) == before and sqlite_db.integrity_check(db) == "ok"
    assert not [p.name for p in data_on_small_disk.iterdir() if ".restore-" in p.name]
    assert not (shop / ".montero" / "restore.json").exists()
    # Once there is room, the same command restores it.
    (data_on_small_disk / "filler").unlink()
    again = cli("restore", "sqlite", backup_id, "--yes")
    assert again.exit_code == 0, again.stderr
    assert sqlite_db.table_checksums(db) == sqlite_db.table_checksums(shop / "backups" / backup_id / "mi_sistema.db")
