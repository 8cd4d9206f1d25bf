"""Check: scheduled jobs ran, and their last run succeeded within its period (services/schedule.py)."""

from __future__ import annotations

from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, failed, passed, skipped


def check_schedule(ctx: Context) -> list[Finding]:
    from montero_ops.services import schedule

    backend, jobs = schedule.status(ctx.project)
    if not jobs:
        return [skipped("schedule", "no schedule installed (montero schedule install)")]
    out = []
    for j in jobs:
        fid = f"schedule.{j.job}"
        if j.problem:
            out.append(failed(fid, f"scheduled {j.job}: {j.problem}",
                              f"montero schedule run {j.job}   # see logs/schedule/{j.job}.json"))
        elif j.last is None:
            out.append(passed(fid, f"scheduled {j.job} ({j.schedule}, {backend}): not run yet"))
        else:
            out.append(passed(fid, f"scheduled {j.job} ({j.schedule}, {backend}): last ok {j.last.finished_at}"))
    return out
