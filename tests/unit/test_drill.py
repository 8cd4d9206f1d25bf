"""Restore drills' evidence (services/drill.py): where it is written, how `backups list` and
`doctor` read it, and what a drill refuses before it touches Docker. The drill itself runs on
the real engine in tests/e2e/test_drill_e2e.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_backup_cli import NoEngine
from test_backup_support import make_db, make_migrations
from typer.testing import Result

from montero_ops.output import size
from montero_ops.project import find_project
from montero_ops.services import drill
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.drill import check_drill
from montero_ops.services.drill import DrillResult
from montero_ops.state import State


@pytest.fixture
def backup(project: Path, monkeypatch: pytest.MonkeyPatch, cli: Callable[..., Result], cli_state: State) -> str:
    cli_state.docker_factory = NoEngine  # type: ignore[assignment]
    monkeypatch.delenv("MONTERO_BACKUP_DIR", raising=False)
    make_migrations(project)
    make_db(project / "data" / "mi_sistema.db", rows=20)
    made = cli("backup", "sqlite", "--json")
    assert made.exit_code == 0, made.stderr
    return str(json.loads(made.stdout)["id"])


def result(backup: str, ok: bool, started: datetime, recovery: float | None = 12.5) -> DrillResult:
    return DrillResult(backup, "local", started.strftime("%Y-%m-%dT%H:%M:%SZ"), "shop-drill-abc123", ok=ok,
                       restore_seconds=2.5 if ok else None, healthy_seconds=10.0 if ok else None,
                       recovery_seconds=recovery if ok else None, cleaned_up=True)


def test_evidence_is_next_to_the_backup_and_in_backups_list(cli: Callable[..., Result], project: Path,
                                                            backup: str) -> None:
    backups = project / "backups"
    path = drill.record(backups, result(backup, True, datetime(2026, 12, 1, 3, 0, tzinfo=UTC)))
    assert path == backups / ".drills" / f"{backup}.json"
    listed = json.loads(cli("backups", "list", "--json").stdout)
    assert [b["id"] for b in listed] == [backup]  # .drills is not a backup
    assert listed[0]["drill"] == {"ok": True, "at": "2026-12-01T03:00:00Z", "source": "local", "recovery_seconds": 12.5}
    text = cli("backups", "list").stdout
    assert "drill ok 2026-12-01 (12 s)" in text
    # A later failed drill of the same backup replaces the evidence shown, not the history.
    drill.record(backups, result(backup, False, datetime(2026, 12, 2, 3, 0, tzinfo=UTC)))
    assert "drill FAILED 2026-12-02" in cli("backups", "list").stdout
    assert drill.last_passed(backups)["started_at"] == "2026-12-01T03:00:00Z"  # type: ignore[index]
    assert len((backups / ".drills" / "history.jsonl").read_text().splitlines()) == 2


def test_backups_list_is_one_uncut_line_per_backup_at_any_width(cli: Callable[..., Result], project: Path,
                                                                 backup: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A borderless table like `ps`: id first, then the size in binary units, revision and notes;
    narrower than a row, Rich must neither wrap nor cut the id or the drill note."""
    drill.record(project / "backups", result(backup, True, datetime(2026, 12, 1, 3, 0, tzinfo=UTC)))
    [listed] = json.loads(cli("backups", "list", "--json").stdout)
    for width in ("200", "30"):
        monkeypatch.setenv("COLUMNS", width)
        monkeypatch.setenv("TERMINAL_WIDTH", width)
        [line] = cli("backups", "list").stdout.splitlines()
        cells = line.split()
        assert cells[0] == backup
        assert " ".join(cells[1:3]) == size(listed["size"]) and cells[2].endswith("iB")
        assert line.endswith(f"rev {listed['revision']}  drill ok 2026-12-01 (12 s)")
        assert "…" not in line


def test_pruning_a_backup_forgets_its_drill_but_the_history_counts(cli: Callable[..., Result], project: Path,
                                                                 backup: str) -> None:
    backups = project / "backups"
    drill.record(backups, result(backup, True, datetime(2026, 12, 1, 3, 0, tzinfo=UTC)))
    drill.forget(backups, backup)
    assert not (backups / ".drills" / f"{backup}.json").exists()
    assert drill.last_passed(backups) is not None


def test_doctor_skips_warns_and_passes(project: Path, backup: str) -> None:
    backups = project / "backups"
    ctx = Context(find_project(project))
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    [none] = check_drill(ctx, now)
    assert none.status.value == "warn" and "no restore drill has passed" in none.message
    drill.record(backups, result(backup, False, now - timedelta(hours=2)))
    assert check_drill(ctx, now)[0].status.value == "warn"  # a failed drill is no evidence
    drill.record(backups, result(backup, True, now - timedelta(days=3)))
    [recent] = check_drill(ctx, now)
    assert recent.status.value == "pass" and "3 days ago, recovery time 12.5 s" in recent.message
    [stale] = check_drill(ctx, now + timedelta(days=6))
    assert stale.status.value == "warn" and "none in 8 days" in stale.message


def test_doctor_skips_without_backups(project: Path) -> None:
    assert [f.status.value for f in check_drill(Context(find_project(project)))] == ["skip"]


def test_drill_of_a_backup_without_sqlite_is_refused(cli: Callable[..., Result], project: Path, backup: str) -> None:
    from montero_ops.services.backups.manifest import read_manifest, write_manifest

    folder = project / "backups" / backup
    manifest = read_manifest(folder)
    manifest.contents = ["redis"]
    write_manifest(folder, manifest)
    done = cli("backups", "drill", backup)
    assert done.exit_code == 2
    assert [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")] == [
        f"Error: backup {backup} holds no SQLite database (redis): nothing to drill"]
    assert not (project / "backups" / ".drills").exists()
    assert not list((project / ".montero").glob("drill-*"))


def test_appendonly_is_read_from_the_compose_command() -> None:
    import yaml

    # The project's own compose.yml: Redis starts through `sh -c` (its password from the
    # environment), so --appendonly is inside one string, not a word of its own.
    compose = yaml.safe_load((Path(__file__).resolve().parents[2] / "docker" / "compose.yml").read_text())
    assert drill.appendonly(compose["services"]["redis"]["command"]) is True
    assert drill.appendonly(["redis-server", "--appendonly", "yes"]) is True
    assert drill.appendonly(["redis-server", "--appendonly", "no"]) is False
    assert drill.appendonly(None) is False  # the image's default: RDB only
