"""Issue 12.12: answering "no" to a confirmation ends every command the same way (exit 1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.conftest import DockerCalls, FakeEngine
from tests.unit.test_backup_cli import backup, shop  # noqa: F401  (the fixture)
from tests.unit.test_other_commands import _df


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("montero_ops.commands._common.interactive", lambda: True)


def _declined(result) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    assert result.stderr.splitlines()[-1] == "aborted: nothing was changed", result.stderr


def test_down_prune_and_deploy_remove_answered_no(cli, docker: DockerCalls, engine: FakeEngine, terminal) -> None:
    engine.volumes = ["shop_redis-data"]
    _declined(cli("down", "--volumes", input="n\n"))
    _df(docker)
    _declined(cli("prune", input="n\n"))
    _declined(cli("deploy", "remove", "--stack", "st", input="n\n"))
    assert not [c for c in docker.calls if "down" in c or "prune" in c or "rm" in c]


def test_restore_and_backups_prune_answered_no(cli, shop: Path, terminal) -> None:  # noqa: F811
    project = shop
    ids = [backup(cli) for _ in range(2)]
    _declined(cli("restore", "sqlite", ids[0], input="n\n"))
    _declined(cli("backups", "prune", "--keep", "1", input="n\n"))
    assert len(list((project / "backups").iterdir())) == 2
