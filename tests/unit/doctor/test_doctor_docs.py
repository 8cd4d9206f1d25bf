"""Every finding id doctor can print is documented in docs/doctor.md (with its fix)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from doctor_helpers import DoctorEngine, project_of

from montero_ops.services.doctor import runner
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, passed

DOC = Path(__file__).resolve().parents[3] / "docs" / "doctor.md"


def _documented() -> set[str]:
    return set(re.findall(r"^\| `([a-z_.<>]+)`", DOC.read_text(), flags=re.MULTILINE)) | set(
        re.findall(r"`([a-z]+\.[a-z_]+)`, `([a-z]+\.[a-z_]+)`", DOC.read_text())[0]
    )


@pytest.mark.parametrize("production", [False, True])
def test_every_id_is_documented(root: Path, monkeypatch: pytest.MonkeyPatch, production: bool) -> None:
    fake = DoctorEngine()
    for service in ("app", "redis", "nginx"):
        fake.add(service)

    def connect(ctx: Context) -> Finding:
        ctx.engine = fake  # type: ignore[assignment]
        return passed("docker.daemon", "fake")

    monkeypatch.setattr(runner, "connect", connect)
    report = runner.run_doctor(project_of(root), production=production)
    ids = {re.sub(r"^(health|restarts)\..+$", r"\1.<service>", re.sub(r"^schedule\..+$", "schedule.<job>", f.id)) for f in report.findings}
    assert ids - _documented() == set()
