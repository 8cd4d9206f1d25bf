"""A test swaps the Docker clients by handing the CLI a State with factories (docs/architecture.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from montero_ops.cli import app
from montero_ops.state import State
from tests.unit.conftest import FakeEngine, container


def test_the_states_factories_reach_the_command(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("montero_ops.services.status.start_defined_services", lambda project: lambda: ["app", "redis"])
    fake = FakeEngine()
    fake.set(container("app"), container("redis", health="starting"))
    built: list[str] = []

    def engine() -> FakeEngine:
        built.append("engine")
        return fake

    result = CliRunner().invoke(app, ["ps", "--json"], obj=State(engine_factory=engine), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["service"], r["condition"]) for r in rows] == [("app", "healthy"), ("redis", "starting")]
    assert built == ["engine"]
