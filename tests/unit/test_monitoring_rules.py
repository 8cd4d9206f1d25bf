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


def _quiet_and_firing(tmp_path: Path, name: str, healthy: list[dict[str, Any]], bad: list[dict[str, Any]],
                      at: str, summary_text: str, labels: dict[str, str] | None = None) -> None:
    done = promtool_test(tmp_path, [
        {"interval": "1m", "input_series": healthy, "alert_rule_test": [alerts_at(at, name, [])]},
        {"interval": "1m", "input_series": bad, "alert_rule_test": [
            alerts_at(at, name, [{"exp_labels": {"severity": "warning", **(labels or {})},
                                  "exp_annotations": {"summary": summary_text}}])]},
    ])
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_error_rate_over_1_percent_for_5_minutes(tmp_path: Path) -> None:
    def requests(errors_per_min: int) -> list[dict[str, Any]]:
        return [{"series": 'montero_http_requests_total{endpoint="/api/clients",status="200"}', "values": "0+600x20"},
                {"series": 'montero_http_requests_total{endpoint="/api/clients",status="500"}',
                 "values": f"0+{errors_per_min}x20"}]

    # 3 of 603 a minute (0.5 %) stays quiet; 18 of 618 (2.9 %) fires once it lasted 5 minutes.
    _quiet_and_firing(tmp_path, "AppErrorRate", requests(3), requests(18), "15m",
                      summary("AppErrorRate").replace("{{ $value | humanizePercentage }}", "2.913%"))


@needs_promtool
def test_p99_over_1_second_for_5_minutes(tmp_path: Path) -> None:
    def latency(slow_per_min: int) -> list[dict[str, Any]]:
        # 100 requests a minute: all under 0.5 s but `slow_per_min` of them between 2.5 and 5 s
        # (2 of 100: the 99th percentile is half-way into that bucket, 3.75 s).
        series = 'montero_http_request_duration_seconds_bucket{endpoint="/api/clients",le="%s"}'
        return [{"series": series % "0.5", "values": f"0+{100 - slow_per_min}x20"},
                {"series": series % "2.5", "values": f"0+{100 - slow_per_min}x20"},
                {"series": series % "5.0", "values": "0+100x20"},
                {"series": series % "+Inf", "values": "0+100x20"},
                # /metrics is left out of the rule: its own slow scrapes never fire it.
                {"series": 'montero_http_request_duration_seconds_bucket{endpoint="/metrics",le="+Inf"}',
                 "values": "0+100x20"},
                {"series": 'montero_http_request_duration_seconds_bucket{endpoint="/metrics",le="0.5"}',
                 "values": "0+0x20"}]

    _quiet_and_firing(tmp_path, "AppLatencyP99", latency(0), latency(2), "15m",
                      summary("AppLatencyP99").replace("{{ $value }}", "3.75"))


@needs_promtool
def test_redis_memory_over_90_percent(tmp_path: Path) -> None:
    def used(mb: int) -> list[dict[str, Any]]:
        return [{"series": 'redis_memory_used_bytes{job="redis"}', "values": f"{mb * 2**20}x20"},
                {"series": 'redis_memory_max_bytes{job="redis"}', "values": f"{256 * 2**20}x20"}]

    _quiet_and_firing(tmp_path, "RedisMemoryHigh", used(200), used(240), "10m", summary("RedisMemoryHigh"),
                      {"job": "redis"})


@needs_promtool
def test_data_disk_over_85_percent(tmp_path: Path) -> None:
    def ratio(value: float) -> list[dict[str, Any]]:
        return [{"series": 'montero_data_disk_used_ratio{instance="app-1:5000",job="app"}', "values": f"{value}x20"}]

    _quiet_and_firing(tmp_path, "DataDiskHigh", ratio(0.8), ratio(0.9), "10m",
                      summary("DataDiskHigh").replace("{{ $value | humanizePercentage }}", "90%"))
