"""The runner (concurrency, time bounds, skips, scrubbing, repairs) and the `montero doctor` command."""

from __future__ import annotations

import json
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from doctor_helpers import STRONG_KEY, DoctorEngine, needs_root, project_of, write_env
from typer.testing import CliRunner

from montero_ops.services.doctor import runner
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, Repair, Report, Status, failed, passed, warned
from montero_ops.services.doctor.runner import Check, apply_repairs, run_doctor

NO_DOCKER = "unix:///tmp/montero-doctor-test-no-such.sock"


@pytest.fixture
def docker_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_DOCKER)


@pytest.fixture
def docker_up(monkeypatch: pytest.MonkeyPatch) -> DoctorEngine:
    fake = DoctorEngine()

    def connect(ctx: Context) -> Finding:
        ctx.engine = fake  # type: ignore[assignment]
        return passed("docker.daemon", "fake daemon")

    monkeypatch.setattr(runner, "connect", connect)
    return fake


def test_without_docker_the_daemon_is_the_first_finding_and_docker_checks_skip(root: Path, docker_down: None) -> None:
    report = run_doctor(project_of(root))
    first = report.findings[0]
    assert (first.id, first.status) == ("docker.daemon", Status.FAIL)
    statuses = {f.id: f.status for f in report.findings}
    for check_id in ("docker.version", "restarts", "health", "images.app"):
        assert statuses[check_id] is Status.SKIP
    assert statuses["config.env_file"] is Status.FAIL  # file checks still run
    assert not report.ok


def test_hung_check_becomes_a_finding(root: Path, docker_up: DoctorEngine) -> None:
    release = threading.Event()

    def hang(ctx: Context) -> list[Finding]:
        release.wait(30)
        return [passed("slow", "never seen")]

    try:
        report = run_doctor(project_of(root), timeout=0.2, checks=[Check("slow", hang, needs_docker=True)])
    finally:
        release.set()
    [_, slow] = report.findings
    assert slow.id == "slow" and slow.status is Status.FAIL
    assert "no answer within" in slow.message and "restart docker" in slow.fix


def test_crashing_check_warns_and_others_still_report(root: Path, docker_up: DoctorEngine) -> None:
    def boom(ctx: Context) -> list[Finding]:
        raise KeyError("Health")

    report = run_doctor(project_of(root), checks=[Check("boom", boom), Check("fine", lambda c: [passed("fine", "ok")])])
    found = {f.id: f for f in report.findings}
    assert found["boom"].status is Status.WARN and "KeyError" in found["boom"].message
    assert found["fine"].status is Status.PASS


def test_checks_run_concurrently(root: Path, docker_up: DoctorEngine) -> None:
    barrier = threading.Barrier(3, timeout=5)

    def meet(name: str) -> Callable[[Context], list[Finding]]:
        def check(ctx: Context) -> list[Finding]:
            barrier.wait()  # only returns when all three run at once
            return [passed(name, "met")]

        return check

    report = run_doctor(project_of(root), checks=[Check(n, meet(n)) for n in ("a", "b", "c")])
    assert [f.status for f in report.findings] == [Status.PASS] * 4


def test_secrets_are_scrubbed_from_every_finding(root: Path, docker_up: DoctorEngine) -> None:
    write_env(root, f"SECRET_KEY={STRONG_KEY}\n")

    def leaky(ctx: Context) -> list[Finding]:
        return [failed("leak", f"key is {STRONG_KEY}", f"export SECRET_KEY={STRONG_KEY}")]

    [_, leak] = run_doctor(project_of(root), checks=[Check("leak", leaky)]).findings
    assert STRONG_KEY not in leak.message + leak.fix
    assert "********" in leak.message


def test_json_shape_is_stable() -> None:
    report = Report([warned("x.y", "msg", "fix it")])
    assert report.to_list() == [{"id": "x.y", "status": "warn", "message": "msg", "fix": "fix it", "detail": []}]
    assert report.summary() == "0 passed, 1 warnings, 0 failed, 0 skipped"


def test_apply_repairs_runs_safe_ones_and_asks_for_the_rest() -> None:
    applied: list[str] = []
    safe = warned("a", "m", repair=Repair("safe thing", lambda: applied.append("safe") or "did safe", safe=True))
    risky = failed("b", "m", repair=Repair("risky thing", lambda: applied.append("risky") or "did risky"))
    passing = passed("c", "m")
    passing.repair = Repair("never", lambda: applied.append("never") or "")
    asked: list[str] = []
    outcomes = apply_repairs(Report([safe, risky, passing]), lambda f, r: asked.append(f.id) or False)
    assert applied == ["safe"] and asked == ["b"]
    assert [o for _, o in outcomes] == ["did safe", "skipped: risky thing"]


# -- the command ---------------------------------------------------------------------------------


def _invoke(root: Path, *args: str, input: str | None = None) -> Any:
    from montero_ops.cli import app

    return CliRunner().invoke(app, ["--project-dir", str(root), "doctor", *args], input=input, catch_exceptions=False)


def test_cli_json_without_docker(root: Path, docker_down: None) -> None:
    result = _invoke(root, "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data[0]["id"] == "docker.daemon" and data[0]["status"] == "fail"
    assert all(set(item) == {"id", "status", "message", "fix", "detail"} for item in data)
    assert {item["status"] for item in data} <= {"pass", "warn", "fail", "skip"}


def test_cli_text_lines_fixes_and_summary(root: Path, docker_down: None) -> None:
    result = _invoke(root)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✘ docker.daemon")
    assert "    fix: sudo systemctl start docker" in lines[1]
    assert any(line.startswith("✘ config.env_file") for line in lines)
    assert "    fix: montero env init" in result.stdout
    assert lines[-1].endswith("skipped") and "failed" in lines[-1]


@needs_root
def test_cli_fix_creates_env_and_chmods_but_asks_before_the_rest(root: Path, docker_down: None) -> None:
    result = _invoke(root, "--fix")
    env = root / ".env"
    assert env.is_file() and stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "fix config.env_file: created" in result.stderr
    assert "After the fixes:" in result.stdout
    assert "✔ config.secret_key" in result.stdout
    (root / "data").chmod(0o755)  # owned by root: the chown repair is not safe, so it needs --yes
    env.chmod(0o644)
    result = _invoke(root, "--fix")
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
    assert "connect.data_writable: not applied without confirmation" in result.stderr
    assert (root / "data").stat().st_uid == 0


@needs_root
def test_cli_fix_yes_applies_the_asked_ones(root: Path, docker_down: None) -> None:
    write_env(root, "SECRET_KEY=short\n")
    result = _invoke(root, "--fix", "--yes")
    assert "fix config.secret_key: wrote a fresh SECRET_KEY" in result.stderr
    assert (root / "data").stat().st_uid == 1000
    assert "short" not in (root / ".env").read_text()


def test_cli_never_prints_secrets(root: Path, docker_down: None) -> None:
    write_env(root, "SECRET_KEY=tooshort-but-secret\nMAIL_USERNAME=a@b.c\nMAIL_PASSWORD=hunter2-mail\n", mode=0o644)
    for args in ((), ("--json",), ("--production",)):
        result = _invoke(root, *args)
        assert "tooshort-but-secret" not in result.output and "hunter2-mail" not in result.output
