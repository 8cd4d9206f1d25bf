"""A scheduled run that fails on purpose, through the real crontab entry montero installs:
its exact command line is run the way cron runs it (sh -c, almost empty environment), and the
failure shows up in the run record, `montero schedule status`, `montero doctor` and at a real
local webhook receiver. (Waiting for cron's next minute would add up to 60 s for no more proof.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("crontab") is None, reason="cron is not installed (scripts/setup.sh)")


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/montero", got
    server.shutdown()
    server.server_close()


def montero(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "montero_ops", "--project-dir", str(root), *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / f"cronshop{uuid.uuid4().hex[:6]}"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text((ROOT / "docker" / "compose.yml").read_text())
    yield root
    montero(root, "schedule", "remove")  # the user's crontab gets back exactly what it had


def test_failed_cron_run_reaches_doctor_and_webhook(shop: Path, receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    (shop / ".env").write_text(f"MONTERO_NOTIFY_URL={url}\n")
    before = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False).stdout
    installed = montero(shop, "schedule", "install", "--cron", "--backup", "03:15")
    assert installed.returncode == 0, installed.stderr
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
    ours = [ln for ln in crontab.splitlines() if "schedule run backup" in ln and str(shop) in ln]
    assert len(ours) == 1 and ours[0].startswith("15 3 * * * ")
    # Run the entry's command exactly as cron would: its text after the five time fields, by sh.
    command = ours[0].split(" ", 5)[5]
    # Fails on purpose: a full backup of a stack that was never started (no data, no Redis).
    proc = subprocess.run(["sh", "-c", command], env={"HOME": str(shop), "SHELL": "/bin/sh"},
                          capture_output=True, text=True, timeout=180, check=False)
    assert proc.returncode != 0
    record = json.loads((shop / "logs" / "schedule" / "backup.json").read_text())
    assert record["exit_code"] != 0 and record["summary"] and record["last_success_at"] is None
    assert len(got) == 1 and got[0]["event"] == "schedule.failed" and got[0]["job"] == "backup"
    assert got[0]["summary"] == record["summary"]
    status = montero(shop, "schedule", "status", "--json")
    assert status.returncode == 1
    assert json.loads(status.stdout)["jobs"][0]["problem"].startswith("last run failed")
    doctor = montero(shop, "doctor", "--json")
    findings = {f["id"]: f for f in json.loads(doctor.stdout)}
    assert findings["schedule.backup"]["status"] == "fail"
    assert doctor.returncode == 1
    removed = montero(shop, "schedule", "remove")
    assert removed.returncode == 0
    after = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False).stdout
    assert str(shop) not in after and after.strip() == before.strip()


def _cron_running() -> bool:
    return subprocess.run(["pgrep", "-x", "cron"], capture_output=True, check=False).returncode == 0


@pytest.fixture
def cron_daemon() -> Iterator[None]:
    """Debian's cron daemon: the one already running, else one started here (a container has
    no init to start it) and stopped at the end by its pid."""
    if _cron_running():
        yield
        return
    if not Path("/usr/sbin/cron").exists() or os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the cron daemon is needed (scripts/setup.sh installs it; it runs as root)", pytrace=False)
        pytest.skip("no cron daemon to start (needs /usr/sbin/cron and root)")
    proc = subprocess.Popen(["/usr/sbin/cron", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        assert proc.poll() is None, "cron -f exited at once"
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_cron_daemon_runs_the_installed_entry_at_its_minute(
        shop: Path, receiver: tuple[str, list[dict[str, Any]]], cron_daemon: None) -> None:
    """The real daemon, not its command line run by hand: the entry's time fields, cron's own
    environment and its parsing of the line (e.g. '%') are part of what is proven. Costs up to
    two minutes of waiting for cron's minute."""
    url, got = receiver
    (shop / ".env").write_text(f"MONTERO_NOTIFY_URL={url}\n")
    now = datetime.now()  # cron reads the local time, as `schedule install` does
    at = (now + timedelta(minutes=2 if now.second > 45 else 1)).replace(second=0, microsecond=0)
    installed = montero(shop, "schedule", "install", "--cron", "--backup", at.strftime("%H:%M"))
    assert installed.returncode == 0, installed.stderr
    record_file = shop / "logs" / "schedule" / "backup.json"
    deadline = time.monotonic() + (at - datetime.now()).total_seconds() + 150
    while not record_file.exists() and time.monotonic() < deadline:
        time.sleep(1)
    assert record_file.exists(), f"cron did not run the backup entry at {at:%H:%M} (nothing recorded)"
    time.sleep(0.5)  # the webhook is posted right after the record is written
    record = json.loads(record_file.read_text())
    started = datetime.strptime(record["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert started.astimezone().strftime("%H:%M") == at.strftime("%H:%M"), record
    assert record["exit_code"] != 0 and record["summary"], record  # a stack that was never started
    assert [g["job"] for g in got] == ["backup"] and got[0]["event"] == "schedule.failed"
    doctor = montero(shop, "doctor", "--json")
    assert {f["id"]: f for f in json.loads(doctor.stdout)}["schedule.backup"]["status"] == "fail"
