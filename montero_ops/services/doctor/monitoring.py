"""Check 13: with the monitoring profile on (a running prometheus container), the alerts that fire.

Prometheus publishes on loopback only, and may not be published at all; the check asks it from inside
its own container (`python3` fetching /api/v1/alerts), like the other probes.
"""

from __future__ import annotations

import json

from montero_ops.services.doctor.connectivity import probe
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, failed, passed, warned

ALERTS_PROBE = (
    "import urllib.request,sys;"
    "sys.stdout.write(urllib.request.urlopen('http://127.0.0.1:9090/api/v1/alerts',timeout=5).read().decode())"
)


def check_monitoring(ctx: Context) -> list[Finding]:
    if not ctx.docker_up:
        return []
    prometheus = ctx.running("prometheus")
    if prometheus is None:
        return []  # the profile is off: nothing to report
    result = probe(ctx, prometheus, ["python3", "-c", ALERTS_PROBE])
    if result is None or result[0] != 0:
        return [warned("monitoring.alerts", "Prometheus does not answer /api/v1/alerts",
                       "montero logs prometheus   # then montero restart prometheus")]
    try:
        alerts = json.loads(result[1])["data"]["alerts"]
    except (ValueError, KeyError, TypeError):
        return [warned("monitoring.alerts", "Prometheus answered /api/v1/alerts with something unreadable",
                       "montero logs prometheus")]
    active = [a for a in alerts if a.get("state") == "firing"]
    if not active:
        pending = sum(1 for a in alerts if a.get("state") == "pending")
        note = f" ({pending} pending)" if pending else ""
        return [passed("monitoring.alerts", f"no alert firing in Prometheus{note}")]
    names = sorted({str(a.get("labels", {}).get("alertname", "?")) for a in active})
    finding = failed if any(a.get("labels", {}).get("severity") == "critical" for a in active) else warned
    out = finding("monitoring.alerts", f"{len(active)} alert(s) firing: {', '.join(names)}",
                  "see docs/production.md (Monitoring) for what each alert means; montero stats shows the numbers")
    out.detail = [str(a.get("annotations", {}).get("summary", a.get("labels", {}).get("alertname", "")))
                  for a in active]
    return [out]
