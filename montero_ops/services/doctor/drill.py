"""Check: a restore drill passed recently (services/drill.py records each in BACKUPS/.drills/)."""

from __future__ import annotations

from datetime import UTC, datetime

from montero_ops.services.doctor.context import Context
from montero_ops.services.doctor.finding import Finding, passed, skipped, warned

CHECK_ID = "backups.drill"


def check_drill(ctx: Context, now: datetime | None = None) -> list[Finding]:
    from montero_ops.services import drill
    from montero_ops.services.backups.manifest import list_backups

    root = ctx.project.backups_dir
    if not list_backups(root):
        return [skipped(CHECK_ID, "no backups to drill yet")]
    fix = "montero backups drill --latest   # and `montero schedule install --drill sun`"
    last = drill.last_passed(root)
    if last is None:
        return [warned(CHECK_ID, "no restore drill has passed: nobody knows these backups restore", fix)]
    when = datetime.strptime(str(last["started_at"]), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    days = ((now or datetime.now(UTC)) - when).total_seconds() / 86400
    what = f"last passed drill {last['backup']} ({last.get('source')}) {days:.0f} days ago, " \
           f"recovery time {last.get('recovery_seconds')} s"
    if days > drill.STALE_DAYS:
        return [warned(CHECK_ID, f"{what}: none in {drill.STALE_DAYS} days", fix)]
    return [passed(CHECK_ID, what)]
