"""Issue 22 point 8 and 10: `--latest` means one thing everywhere; prune --keep ignores safety backups."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from test_backup_cli import backup, shop  # noqa: F401  (fixture)
from typer.testing import Result

from montero_ops.errors import UsageError
from montero_ops.services.backups.manifest import Manifest, latest_backup, write_manifest


def listed(cli: Callable[..., Result]) -> list[tuple[str, str]]:
    return [(b["id"], b["label"]) for b in json.loads(cli("backups", "list", "--json").stdout)]


def test_prune_keep_1_keeps_the_newest_regular_backup_not_the_safety_one(
        cli: Callable[..., Result], shop: Path) -> None:  # noqa: F811
    first, second = backup(cli), backup(cli)
    restored = cli("restore", "sqlite", first, "--yes")  # makes a safety backup, newer than both
    assert restored.exit_code == 0, restored.stderr
    safety = [i for i, label in listed(cli) if label == "safety"]
    assert len(safety) == 1
    result = cli("backups", "prune", "--keep", "1", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["delete"] == [first]
    assert "newest verified kept: " + second in result.stderr
    assert listed(cli) == [(second, "manual"), (safety[0], "safety")]
    # --latest is the same backup for restore and verify: the newest regular one, never the safety one.
    again = cli("restore", "sqlite", "--latest", "--yes")
    assert again.exit_code == 0, again.stderr
    assert f"restored sqlite from {second}" in again.stderr
    verified = cli("backups", "verify")
    assert verified.exit_code == 0 and verified.stdout == f"ok   {second}\n"


def test_older_safety_backups_go_only_with_older_than(cli: Callable[..., Result], shop: Path) -> None:  # noqa: F811
    kept = backup(cli)
    for _ in range(2):
        assert cli("restore", "sqlite", kept, "--yes").exit_code == 0
    safety = [i for i, label in listed(cli) if label == "safety"]
    assert len(safety) == 2
    assert json.loads(cli("backups", "prune", "--keep", "0", "--yes", "--json").stdout)["delete"] == []
    # Backups are stamped to the second: "--older-than 0h" means an earlier second than now.
    time.sleep(1.05)
    plan = json.loads(cli("backups", "prune", "--keep", "0", "--older-than", "0h", "--yes", "--json").stdout)
    assert plan["delete"] == [safety[0]]  # the newest safety backup (undo of the last restore) stays


def _fake(folder: Path, name: str, contents: list[str], project: str = "shop", label: str = "manual") -> None:
    (folder / name).mkdir(parents=True)
    write_manifest(folder / name, Manifest(id=name, created_at="2026-12-01T00:00:00Z", montero_version="x",
                                           project=project, contents=contents, label=label))


def test_latest_is_the_newest_regular_backup_holding_every_part(tmp_path: Path) -> None:
    _fake(tmp_path, "20261201T000000Z_shop_sqlite+redis", ["sqlite", "redis"])
    _fake(tmp_path, "20261201T010000Z_shop_sqlite", ["sqlite"])
    _fake(tmp_path, "20261201T020000Z_other_sqlite+redis", ["sqlite", "redis"], project="other")
    _fake(tmp_path, "20261201T030000Z_shop_sqlite+redis", ["sqlite", "redis"], label="safety")
    assert latest_backup(tmp_path, "shop", ["sqlite", "redis"]).id == "20261201T000000Z_shop_sqlite+redis"
    assert latest_backup(tmp_path, "shop", ["sqlite"]).id == "20261201T010000Z_shop_sqlite"
    with pytest.raises(UsageError) as err:
        latest_backup(tmp_path, "other", ["postgres"])
    assert err.value.message == (f"no backup in {tmp_path} holds postgres (the newest, "
                                 "20261201T020000Z_other_sqlite+redis, holds sqlite+redis)")
    with pytest.raises(UsageError) as err:
        latest_backup(tmp_path, "nobody")
    assert err.value.message == f"no backups of project nobody in {tmp_path}"


def test_verify_flags_a_file_the_manifest_does_not_list(cli: Callable[..., Result], shop: Path) -> None:  # noqa: F811
    bid = backup(cli)
    (shop / "backups" / bid / "notes.txt").write_text("not part of the backup")
    result = cli("backups", "verify", bid)
    assert result.exit_code == 1
    assert result.stdout == f"FAIL {bid}: notes.txt is not listed in the manifest (an extra file)\n"


def test_list_counts_unfinished_backups_and_their_size(cli: Callable[..., Result], shop: Path) -> None:  # noqa: F811
    bid = backup(cli)
    stale = shop / "backups" / ".partial-k1ll3d"
    stale.mkdir()
    (stale / "mi_sistema.db").write_bytes(b"\0" * (3 * 1024 * 1024))
    result = cli("backups", "list")
    assert result.exit_code == 0
    assert result.stderr.splitlines()[0] == ("1 unfinished backup folder(s), 3.0 MB: .partial-k1ll3d "
                                             "(`montero backups prune` removes those older than an hour)")
    assert result.stdout.startswith(bid)
