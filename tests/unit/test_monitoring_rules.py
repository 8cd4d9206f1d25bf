"""The alert rules shipped in docker/monitoring/alerts.yml, evaluated by Prometheus' own rule engine
(`promtool test rules`, from Debian's prometheus package) over synthetic series: each rule fires on the
condition the docs name and stays quiet on the healthy case. The e2e test
(tests/e2e/test_monitoring_e2e.py) shows the same rules firing on a real stack."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "docker" / "monitoring" / "alerts.yml"
HOUR = 3600
DAY = 24 * HOUR

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool (Debian's prometheus package; scripts/setup.sh installs it) is not installed",
)


def promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    spec = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": tests}
    path = tmp_path / "rules_test.yml"
    path.write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
    return subprocess.run([PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, timeout=60,
                          check=False)


def summary(name: str) -> str:
    """The rule's summary as shipped (promtool compares annotations too)."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"][0]["rules"]
    return str(next(r for r in rules if r.get("alert") == name)["annotations"]["summary"])


def alerts_at(eval_time: str, name: str, expected: list[dict[str, Any]]) -> dict[str, Any]:
    for alert in expected:
        alert.setdefault("exp_annotations", {"summary": summary(name)})
    return {"eval_time": eval_time, "alertname": name, "exp_alerts": expected}


@needs_promtool
def test_rules_file_is_valid() -> None:
    assert PROMTOOL
    done = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_backup_stale_fires_after_26_hours_and_when_there_is_none(tmp_path: Path) -> None:
    # Hourly samples for 40 h. One folder had its last backup at t=1h, one never had any (0).
    healthy = {"series": 'up{job="backups"}', "values": "1x40"}
    readable = {"series": "montero_backup_dir_readable", "values": "1x40"}
    stale = {"severity": "critical"}  # alerts_at adds the shipped summary
    done = promtool_test(tmp_path, [
        {"interval": "1h",
         "input_series": [healthy, readable,
                          {"series": "montero_backup_newest_timestamp_seconds", "values": f"{HOUR}x40"}],
         "alert_rule_test": [alerts_at("20h", "BackupStale", []),      # 19 h old: fine
                             alerts_at("26h", "BackupStale", []),      # exactly 25 h old: fine
                             alerts_at("28h", "BackupStale", [{"exp_labels": stale}])]},
        {"interval": "1h",
         "input_series": [healthy, readable,
                          {"series": "montero_backup_newest_timestamp_seconds", "values": "0x40"}],
         "alert_rule_test": [alerts_at("27h", "BackupStale", [{"exp_labels": stale}])]},
        {"interval": "1h",  # a backup every 24 h keeps it quiet for the whole run
         "input_series": [healthy, readable,
                          {"series": "montero_backup_newest_timestamp_seconds",
                           "values": " ".join(str(DAY * (h // 24)) for h in range(41))}],
         "alert_rule_test": [alerts_at(f"{h}h", "BackupStale", []) for h in (25, 30, 39)]},
    ])
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_backup_folder_unreadable_or_exporter_down(tmp_path: Path) -> None:
    critical = [{"exp_labels": {"severity": "critical"}}]
    done = promtool_test(tmp_path, [
        {"interval": "1m",
         "input_series": [{"series": 'up{job="backups"}', "values": "1x10"},
                          {"series": "montero_backup_dir_readable", "values": "1 1 0x8"}],
         "alert_rule_test": [alerts_at("1m", "BackupFolderUnreadable", []),
                             alerts_at("5m", "BackupFolderUnreadable", critical)]},
        {"interval": "1m",  # the exporter stops answering: the age is unknown, which is not "fine"
         "input_series": [{"series": 'up{job="backups"}', "values": "1 1 0x8"},
                          {"series": "montero_backup_dir_readable", "values": "1x10"}],
         "alert_rule_test": [alerts_at("5m", "BackupFolderUnreadable", critical)]},
    ])
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_certificate_expiry_fires_under_14_days(tmp_path: Path) -> None:
    def expiring_in(days: int) -> dict[str, Any]:
        return {"series": 'probe_ssl_earliest_cert_expiry{instance="nginx:443",job="tls"}',
                "values": f"{days * DAY}x10"}  # t starts at 0, so the value is the seconds left

    done = promtool_test(tmp_path, [
        {"interval": "1m", "input_series": [expiring_in(30)],
         "alert_rule_test": [alerts_at("5m", "CertificateExpiresSoon", [])]},
        {"interval": "1m", "input_series": [expiring_in(10)],
         "alert_rule_test": [alerts_at("5m", "CertificateExpiresSoon", [{
             "exp_labels": {"severity": "warning"},
             "exp_annotations": {"summary": summary("CertificateExpiresSoon").replace(
                 "{{ $value | humanizeDuration }}", "9d 23h 55m 0s")}}])]},
    ])
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_a_rule_that_would_not_fire_is_caught(tmp_path: Path) -> None:
    """The harness itself can fail: expecting BackupStale on a fresh backup is reported as a failure."""
    done = promtool_test(tmp_path, [
        {"interval": "1h",
         "input_series": [{"series": "montero_backup_newest_timestamp_seconds", "values": f"{HOUR}x10"}],
         "alert_rule_test": [alerts_at("5h", "BackupStale", [{"exp_labels": {"severity": "critical"}}])]},
    ])
    assert done.returncode != 0
    assert "BackupStale" in done.stdout + done.stderr
