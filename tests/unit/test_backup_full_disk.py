"""Issue 22, point 1: a full backups disk, for real (a small tmpfs mounted as the backups folder).

Before: 'cannot read …/mi_sistema.db: database or disk is full' (the source was fine) or
'unexpected error: OSError: [Errno 28]'. Now: a precheck that says needed and free, and ENOSPC at
any later step is one line naming the full folder; nothing partial is left or listed.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_backup_cli import shop  # noqa: F401  (fixture)
from test_backup_support import make_db
from typer.testing import Result

from montero_ops.services.backups import create


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
