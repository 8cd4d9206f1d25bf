"""Check 14: with the replicate profile on (a replicate container exists), Litestream is running and
the replica is at most 60 s behind the database.

The lag is the daemon's own measure (its control socket, asked inside the container): seconds since
the replica last held every change. Service down while its container exists fails too: the profile
is on, and nothing is being replicated. The replica itself is not read here (doctor stays fast with
an unreachable S3 target); `montero replication status` does that.
"""

from __future__ import annotations

from datetime import UTC, datetime

from montero_ops.services.doctor.context import Context, container_name
from montero_ops.services.doctor.finding import Finding, failed, passed
from montero_ops.services.replication import LAG_LIMIT, SERVICE, daemon_sync, last_log_error

FIX_DOWN = "montero logs replicate   # then montero up --profile replicate"
FIX_LAG = "montero replication status   # the last error says why (S3 target unreachable? credentials?)"


def check_replication(ctx: Context) -> list[Finding]:
    if not ctx.docker_up:
        return []
    containers = ctx.service_containers(SERVICE)
    if not containers:
        return []  # the profile is off: nothing to report
    assert ctx.engine is not None
    container = containers[0]
    state = container.get("State") or {}
    logs = ""
    try:
        logs = ctx.engine.logs_tail(container["Id"], 200)
    except Exception:  # noqa: BLE001 - the logs only add detail
        logs = ""
    error = last_log_error(logs)
    detail = [ctx.scrub(error)] if error else []
    if not state.get("Running") or state.get("Restarting"):
        status = state.get("Status", "stopped")
        return [failed("replication.service", f"the replicate service is down ({container_name(container)}: {status}): "
                       "database changes are not being replicated", FIX_DOWN, detail=detail)]
    _, lag, problem = daemon_sync(ctx.engine, container["Id"], datetime.now(UTC))
    if problem:
        return [failed("replication.service", problem, FIX_DOWN, detail=detail)]
    assert lag is not None
    if lag > LAG_LIMIT:
        return [failed("replication.lag", f"the replica is {lag:.0f} s behind the database (limit {LAG_LIMIT:.0f} s)",
                       FIX_LAG, detail=detail)]
    return [passed("replication.lag", f"the replica is {lag:.1f} s behind the database (limit {LAG_LIMIT:.0f} s)")]
