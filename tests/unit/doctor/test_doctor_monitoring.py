"""monitoring.alerts: Prometheus's /api/v1/alerts read from inside its container (faked Engine exec)."""

from __future__ import annotations

import json
from pathlib import Path

from doctor_helpers import DoctorEngine, make_ctx

from montero_ops.services.doctor.monitoring import check_monitoring


def _alerts(*alerts: dict[str, object]) -> str:
    return json.dumps({"status": "success", "data": {"alerts": list(alerts)}})


def test_no_prometheus_no_finding(root: Path, engine: DoctorEngine) -> None:
    engine.add("app")
    assert check_monitoring(make_ctx(root, engine)) == []


def test_quiet_prometheus_passes(root: Path, engine: DoctorEngine) -> None:
    engine.add("prometheus")
    engine.on_exec(lambda cmd: cmd[0] == "python3", 0, _alerts({"labels": {"alertname": "AppErrorRate"},
                                                                "state": "pending"}))
    [finding] = check_monitoring(make_ctx(root, engine))
    assert finding.status.value == "pass"
    assert finding.message == "no alert firing in Prometheus (1 pending)"
    assert "/api/v1/alerts" in engine.execs[0][-1]


def test_firing_critical_alert_fails_with_its_summary(root: Path, engine: DoctorEngine) -> None:
    engine.add("prometheus")
    engine.on_exec(lambda cmd: True, 0, _alerts(
        {"labels": {"alertname": "AppReplicaDown", "severity": "critical"}, "state": "firing",
         "annotations": {"summary": "an app replica is down (2 replicas answer)"}},
        {"labels": {"alertname": "AppLatencyP99", "severity": "warning"}, "state": "firing"},
    ))
    [finding] = check_monitoring(make_ctx(root, engine))
    assert finding.status.value == "fail"
    assert finding.message == "2 alert(s) firing: AppLatencyP99, AppReplicaDown"
    assert "an app replica is down (2 replicas answer)" in finding.detail


def test_unanswering_prometheus_warns(root: Path, engine: DoctorEngine) -> None:
    engine.add("prometheus")
    engine.on_exec(lambda cmd: True, 1, "URLError: connection refused")
    [finding] = check_monitoring(make_ctx(root, engine))
    assert finding.status.value == "warn"
    assert "montero logs prometheus" in finding.fix
