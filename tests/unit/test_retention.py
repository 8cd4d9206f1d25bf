"""Retention (GFS) on a planned set of dated backups: the pure rule, then `backups prune`
through the Typer app on real backup folders, then the same policy on a real restic
repository (local path; S3 in tests/e2e/test_offsite_e2e.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_backup_cli import NoEngine
from test_backup_support import make_db, make_migrations
from typer.testing import Result

from montero_ops.errors import UsageError
from montero_ops.services.backups.prune import Item, Policy, retention
from montero_ops.state import State

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
PASSWORD = "retention-test-password-42"


def daily(days: int) -> list[Item]:
    """One backup a day at 03:15 for `days` days up to NOW, newest last."""
    return [Item(f"b{n:03d}", (NOW - timedelta(days=n)).replace(hour=3, minute=15)) for n in range(days - 1, -1, -1)]


def test_gfs_keeps_one_per_day_week_month() -> None:
    items = daily(120)
    decision = retention(items, Policy(daily=7, weekly=4, monthly=3), protected="b000", now=NOW)
    kept = set(decision.keep)
    assert {f"b{n:03d}" for n in range(7)} <= kept  # the last 7 days
    # ISO weeks: NOW is Wed 2026-12-02; the newest backup of each of the 4 most recent weeks is
    # today's (week 49) and the Sundays before it (weeks 48, 47, 46).
    assert {"b003", "b010", "b017"} <= kept and decision.keep["b017"] == ["weekly 2026-W46"]
    # Months: December (b000), November's last day (b001 = Dec 1? no: b002 = Nov 30), October 31.
    assert decision.keep["b002"] == ["daily 2026-11-30", "monthly 2026-11"]
    assert decision.keep["b032"] == ["monthly 2026-10"]
    assert kept == {f"b{n:03d}" for n in range(7)} | {"b010", "b017", "b032"}  # b003 is a daily one too
    assert len(decision.delete) == 120 - len(kept)


def test_safety_backups_are_never_counted() -> None:
    items = daily(5) + [Item("safety-new", NOW - timedelta(minutes=5), safety=True),
                        Item("safety-old", NOW - timedelta(days=40), safety=True)]
    decision = retention(items, Policy(last=2), protected="b000", now=NOW)
    # The two newest *regular* backups are kept: the safety backup pushed none of them out.
    assert decision.keep["b000"] == ["last", "newest verified"] and decision.keep["b001"] == ["last"]
    assert decision.keep["safety-new"] == ["newest safety backup (the undo of the last restore)"]
    assert decision.keep["safety-old"] == ["safety backup (not counted)"]
    # They go only when --older-than says so.
    aged = retention(items, Policy(last=2, older_than="30d"), protected="b000", now=NOW)
    assert "safety-old" in aged.delete and "safety-new" in aged.keep


def test_newest_verified_survives_keep_zero() -> None:
    decision = retention(daily(3), Policy(last=0), protected="b001", now=NOW)
    assert list(decision.keep) == ["b001"] and decision.delete == ["b000", "b002"]


def test_older_than_limits_deletions() -> None:
    decision = retention(daily(10), Policy(last=1, older_than="5d"), protected="b000", now=NOW)
    assert decision.delete == ["b005", "b006", "b007", "b008", "b009"]


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "say what to keep: --keep N and/or --keep-daily/--keep-weekly/--keep-monthly N"),
    ({"daily": -1}, "--keep-daily must be 0 or more"),
    ({"last": 1, "older_than": "soon"}, "--older-than 'soon': use a number and d, h or w (e.g. 30d)"),
])
def test_policy_refuses_bad_input(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as err:
        Policy(**kwargs)  # type: ignore[arg-type]
    assert err.value.message == message


# -- through the CLI, on real backups made on planned dates ------------------------------------------
@pytest.fixture
def dated(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result],
          cli_state: State) -> list[str]:
    """Backups made on 34 planned days (Oct 29 to Dec 2) (one a day, NOW going back), plus one safety backup."""
    cli_state.docker_factory = NoEngine  # type: ignore[assignment]
    for name in ("MONTERO_BACKUP_DIR", "MONTERO_OFFSITE_REPOSITORY", "MONTERO_OFFSITE_PASSWORD", "RESTIC_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    make_migrations(project)
    make_db(project / "data" / "mi_sistema.db", rows=50)
    (project / ".env").write_text(f"MONTERO_OFFSITE_REPOSITORY={tmp_path / 'repo'}\nMONTERO_OFFSITE_PASSWORD={PASSWORD}\n")
    ids = []
    for n in range(33, -1, -1):
        when = NOW - timedelta(days=n, hours=9)
        monkeypatch.setattr("montero_ops.services.backups.create.utc_now", lambda when=when: when)
        result = cli("backup", "sqlite", "--json")
        assert result.exit_code == 0, result.stderr
        ids.append(json.loads(result.stdout)["id"])
    from montero_ops.services.backups.manifest import read_manifest, write_manifest

    # A safety backup, newest of all (what a restore leaves): relabelled like restore does it.
    safety = project / "backups" / ids[-1].replace("T0300", "T0301")
    shutil.copytree(project / "backups" / ids[-1], safety)
    manifest = read_manifest(safety)
    manifest.id, manifest.label = safety.name, "safety"
    write_manifest(safety, manifest)
    ids.append(safety.name)
    return ids


def test_prune_dry_run_lists_and_deletes_nothing(cli: Callable[..., Result], project: Path, dated: list[str]) -> None:
    result = cli("backups", "prune", "--keep-daily", "7", "--keep-weekly", "4", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    plan = json.loads(result.stdout)
    # 7 days (Nov 26 to Dec 2, Sunday Nov 29 among them), then Sundays Nov 22 and Nov 15: 9 of 34 stay.
    assert plan["dry_run"] and len(plan["delete"]) == 34 - 9
    assert all(f"would delete {i}" in result.stderr for i in plan["delete"])
    assert "nothing was deleted" in result.stderr
    assert len(list((project / "backups").iterdir())) == 35


def test_prune_gfs_local(cli: Callable[..., Result], project: Path, dated: list[str]) -> None:
    result = cli("backups", "prune", "--keep-daily", "3", "--keep-monthly", "3", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    left = sorted(p.name for p in (project / "backups").iterdir())
    # Backups at 03:00 on Dec 2 back to Oct 29. Daily 3: Dec 2, Dec 1, Nov 30. Monthly 3: December
    # and November are already kept by those, October's newest is Oct 31 (dated[-34]). And the
    # safety backup, which no rule counts.
    assert left == sorted([dated[-2], dated[-3], dated[-4], dated[-34], dated[-1]])
    assert dated[-34].startswith("20261031T")
    assert json.loads(result.stdout)["protected"] == dated[-2]


@pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed (scripts/setup.sh)")
def test_prune_offsite_applies_the_same_policy(cli: Callable[..., Result], project: Path, dated: list[str]) -> None:
    for bid in dated[-5:]:
        assert cli("backups", "push", bid).exit_code == 0
    dry = cli("backups", "prune", "--keep", "2", "--offsite", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    planned = json.loads(dry.stdout)
    offsite_gone = [s["backup"] for s in planned["offsite"]["delete"]]
    # 5 pushed: the safety one is not counted, the 2 newest regular stay, 2 go; the same 2 go locally.
    assert sorted(offsite_gone) == sorted(dated[-5:-3])
    assert set(offsite_gone) <= set(planned["delete"])
    assert len(json.loads(cli("backups", "list", "--offsite", "--json").stdout)) == 5  # dry run: nothing gone
    done = cli("backups", "prune", "--keep", "2", "--offsite", "--yes")
    assert done.exit_code == 0, done.stderr
    assert "2 offsite (restic forget --prune)" in done.stderr
    left = [s["backup"] for s in json.loads(cli("backups", "list", "--offsite", "--json").stdout)]
    assert sorted(left) == sorted(dated[-3:])
    assert cli("backups", "verify", "--offsite").exit_code == 0
