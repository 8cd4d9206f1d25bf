"""Checks data.restore and data.unfinished: a restore that was killed halfway (its journal is
left in .montero/), and unfinished backups (.partial-* folders) that no listing shows.

Doctor only reads here: the next state-changing command (which holds the project lock)
removes the leftovers.
"""

from __future__ import annotations

from montero_ops.services.backups.journal import find_interrupted, leftovers, read_journal
from montero_ops.services.backups.manifest import partial_backups
from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, failed, passed, warned
from montero_ops.services.lock import holder


def check_restore(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    found = find_interrupted(ctx.project, clean=False)
    if found is not None:
        left = leftovers(found.journal)
        lines = found.lines + ([f"its leftovers (removed by the next backup/restore/up): {', '.join(left)}"]
                               if left else [])
        findings.append(failed("data.restore", "; ".join(lines), found.fix))
    else:
        journal, running = read_journal(ctx.project), holder(ctx.project)
        if journal is not None and running is not None:
            findings.append(passed("data.restore", f"a restore is running (pid {running.pid}, since {running.started_at})"))
        else:
            findings.append(passed("data.restore", "no interrupted restore"))
    partials = partial_backups(ctx.project.backups_dir)
    if partials:
        size = sum(p.size for p in partials)
        findings.append(warned(
            "data.unfinished",
            f"{len(partials)} unfinished backup folder(s) in {ctx.project.backups_dir} ({size / 1024 / 1024:.1f} MB), "
            "left by backups that were killed",
            "montero backups prune --keep N   # also deletes unfinished backups older than an hour",
            detail=[f"{p.path.name}  {p.size / 1024 / 1024:.1f} MB" for p in partials]))
    return findings
