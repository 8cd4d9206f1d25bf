"""Scheduler: the job registry, cron and systemd entries, run records, webhook, doctor.

The crontab itself is the one boundary replaced here (a unit test must not edit the user's
crontab); tests/e2e/test_schedule_e2e.py installs into the real one. Jobs really run
(`python -m montero_ops ...` subprocesses) and the webhook is a real local HTTP server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from montero_ops.project import find_project
from montero_ops.services import schedule as sched
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.schedule import check_schedule


@pytest.fixture
def crontab(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    store = {"text": "MAILTO=ops@example.org\n0 1 * * * /usr/bin/other-job\n"}
    monkeypatch.setattr(sched, "read_crontab", lambda: store["text"])
    monkeypatch.setattr(sched, "write_crontab", lambda text: store.__setitem__("text", text))
    monkeypatch.setattr(sched, "systemd_present", lambda: False)
    return store


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def test_when_renders_cron_and_systemd() -> None:
    assert sched.When(3, 15).cron() == "15 3 * * *"
    assert sched.When(5, 0, weekday=6).cron() == "0 5 * * 0"  # Sunday is 0 for cron
    assert sched.When(5, 0, weekday=0).systemd() == "Mon *-*-* 05:00:00"
    assert sched.When(3, 15).period == 86400 and sched.When(1, 1, weekday=2).period == 7 * 86400


@pytest.mark.parametrize("bad", ["25:00", "3", "aa:bb", "12:60"])
def test_bad_time_is_a_usage_error(cli: Any, project: Path, crontab: dict[str, str], bad: str) -> None:
    result = cli("schedule", "install", "--backup", bad)
    assert result.exit_code == 2
    assert f"not a time of day: '{bad}'" in result.stderr
    assert "montero" not in crontab["text"]


def test_install_keeps_other_entries_and_replaces_its_own(cli: Any, project: Path, crontab: dict[str, str]) -> None:
    assert cli("schedule", "install", "--backup", "02:30", "--drill", "sun").exit_code == 0
    assert cli("schedule", "install", "--backup", "01:00").exit_code == 0
    text = crontab["text"]
    assert "0 1 * * * /usr/bin/other-job" in text and "MAILTO=ops@example.org" in text
    assert text.count("# BEGIN montero:shop:") == 1
    assert "0 1 * * * PATH=" in text and "schedule run backup" in text and "schedule run prune" in text
    assert "schedule run drill" not in text  # off by default, and the second install did not ask for it
    assert f"--project-dir {project}" in text
    result = cli("schedule", "remove")
    assert result.exit_code == 0 and "crontab entries" in result.stderr
    assert "montero" not in crontab["text"] and "/usr/bin/other-job" in crontab["text"]


def test_registry_takes_new_jobs(cli: Any, project: Path, crontab: dict[str, str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sched.JOBS, "tls-renew", sched.JobSpec(
        "tls-renew", "renew TLS certificates", lambda p: ["tls", "renew"], sched.When(4, 45)))
    assert cli("schedule", "install", "--job", "tls-renew=wed@02:10").exit_code == 0
    assert "10 2 * * 3 PATH=" in crontab["text"] and "schedule run tls-renew" in crontab["text"]
    assert cli("schedule", "install", "--job", "nope=02:10").exit_code == 2


def test_systemd_units_content(project: Path) -> None:
    p = find_project(project)
    entry = sched.plan(p, {"backup": sched.When(3, 15)})[0]
    units = sched.systemd_units(p, entry)
    service, timer = units["montero-shop-backup.service"], units["montero-shop-backup.timer"]
    assert "Type=oneshot" in service and f"WorkingDirectory={project}" in service
    assert "ExecStart=" in service and service.rstrip().endswith("schedule run backup")
    assert "OnCalendar=*-*-* 03:15:00" in timer and "Persistent=true" in timer
    assert "Unit=montero-shop-backup.service" in timer and "WantedBy=timers.target" in timer


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze (Debian's systemd) is absent")
def test_systemd_units_pass_systemds_own_verifier(tmp_path: Path) -> None:
    """systemd does not run as PID 1 here, so the timers cannot be started; systemd's own parser can
    still judge every unit montero writes (syntax, OnCalendar, ExecStart quoting and executable),
    for every job, in a project folder whose path has a space and a quote."""
    root = tmp_path / "my shop's stack"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text("services: {}\n")
    (root / ".env").write_text("")
    p = find_project(root)
    units = tmp_path / "units"
    units.mkdir()
    entries = sched.plan(p, {name: sched.When(3, 15) for name in sched.JOBS})
    assert {e.job for e in entries} == set(sched.JOBS)
    for entry in entries:
        for name, text in sched.systemd_units(p, entry).items():
            (units / name).write_text(text)
    paths = sorted(str(path) for path in units.iterdir())
    done = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert str(units) not in done.stderr, done.stderr  # no warning about any of these files
    # The calendar spec is one systemd reads as 03:15 every day.
    timer = next(u for u in paths if u.endswith("-backup.timer"))
    spec = next(line for line in Path(timer).read_text().splitlines() if line.startswith("OnCalendar="))
    calendar = subprocess.run(["systemd-analyze", "calendar", spec.removeprefix("OnCalendar=")],
                              capture_output=True, text=True, check=False, timeout=30)
    assert calendar.returncode == 0 and "Normalized form: *-*-* 03:15:00" in calendar.stdout, calendar.stdout
    # A unit with a broken calendar is refused by the same verifier: the check can fail.
    Path(timer).write_text(Path(timer).read_text().replace(spec, "OnCalendar=*-*-* 25:99:00"))
    broken = subprocess.run(["systemd-analyze", "verify", "--man=no", timer], capture_output=True, text=True,
                            check=False, timeout=60)
    assert broken.returncode != 0


def test_failed_run_is_recorded_notified_and_a_doctor_failure(
    cli: Any, project: Path, crontab: dict[str, str], receiver: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, got = receiver
    (project / ".env").write_text(f"MONTERO_NOTIFY_URL={url}\n")
    # A real montero command that fails: verifying a backup that does not exist.
    monkeypatch.setitem(sched.JOBS, "backup", sched.JobSpec(
        "backup", "x", lambda p: ["backups", "verify", "no-such-backup", "--dir", str(project / "b")], sched.When(3, 0)))
    assert cli("schedule", "install").exit_code == 0
    result = cli("schedule", "run", "backup")
    assert result.exit_code == 1
    record = json.loads((project / "logs" / "schedule" / "backup.json").read_text())
    assert record["exit_code"] != 0 and "no-such-backup" in record["summary"] and record["last_success_at"] is None
    assert len(got) == 1 and got[0]["event"] == "schedule.failed" and got[0]["job"] == "backup"
    assert got[0]["project"] == "shop" and got[0]["exit_code"] == record["exit_code"]
    status = cli("schedule", "status", "--json")
    assert status.exit_code == 1
    job = next(j for j in json.loads(status.stdout)["jobs"] if j["job"] == "backup")
    assert job["problem"].startswith("last run failed")
    findings = check_schedule(Context(find_project(project)))
    assert [f.status.value for f in findings if f.id == "schedule.backup"] == ["fail"]


def test_success_is_recorded_and_goes_stale_after_its_period(
    cli: Any, project: Path, crontab: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sched.JOBS, "backup", sched.JobSpec("backup", "x", lambda p: ["version"], sched.When(3, 0)))
    assert cli("schedule", "install").exit_code == 0
    assert cli("schedule", "run", "backup").exit_code == 0
    p = find_project(project)
    _, jobs = sched.status(p)
    backup = next(j for j in jobs if j.job == "backup")
    assert backup.problem is None and backup.last is not None and backup.last.last_success_at
    _, later = sched.status(p, now=time.time() + 86400 + 2 * 3600)
    assert "older than its period" in (next(j for j in later if j.job == "backup").problem or "")
    assert [f.status.value for f in check_schedule(Context(p)) if f.id == "schedule.backup"] == ["pass"]


def test_doctor_skips_without_schedule(project: Path) -> None:
    assert [f.status.value for f in check_schedule(Context(find_project(project)))] == ["skip"]


def test_prune_job_uses_gfs_and_the_offsite_repository_when_set(project: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MONTERO_OFFSITE_REPOSITORY", raising=False)
    p = find_project(project)
    argv = sched.JOBS["prune"].argv(p)
    assert argv == ["backups", "prune", "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6", "--yes"]
    (project / ".env").write_text("MONTERO_OFFSITE_REPOSITORY=/mnt/disk/restic\n")
    assert "--offsite" in sched.JOBS["prune"].argv(p)
    # The command line parses: the real app accepts every option of the job (dry run, no backups).
    from typer.testing import CliRunner

    from montero_ops.cli import app

    (project / ".env").write_text("")
    result = CliRunner().invoke(app, ["--project-dir", str(project), *argv[:-1], "--dry-run"])
    assert result.exit_code == 0, result.stderr
    assert "nothing to prune (daily 7, weekly 4, monthly 6)" in result.stderr


def test_install_schedules_renewal_once_certbot_holds_a_certificate(cli: Any, project: Path,
                                                                     crontab: dict[str, str]) -> None:
    """`schedule install` alone renews what `tls issue` made (issue 19 point 3); with no certbot
    certificate (none, or self-signed) there is nothing to renew and no renew entry."""
    assert cli("schedule", "install").exit_code == 0
    assert "schedule run renew" not in crontab["text"]
    from montero_ops.services.acme import config_dir

    renewal = config_dir(find_project(project)) / "renewal"
    renewal.mkdir(parents=True)
    (renewal / "shop.example.conf").write_text("[renewalparams]\nauthenticator = webroot\n")
    assert cli("schedule", "install").exit_code == 0
    assert "45 2 * * * PATH=" in crontab["text"] and "schedule run renew" in crontab["text"]
    assert "schedule run backup" in crontab["text"]  # the other defaults are still there
    # Its time can still be chosen.
    assert cli("schedule", "install", "--job", "renew=04:10").exit_code == 0
    assert "10 4 * * * PATH=" in crontab["text"] and "45 2 * * *" not in crontab["text"]
