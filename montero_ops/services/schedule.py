"""Schedules that cannot stop silently: a small job registry, cron/systemd entries, run records.

A job is a montero command line run on a timetable. Other features add their own job with
`register_job(JobSpec(...))` (e.g. TLS renewal); `montero schedule install` writes one entry
per enabled job. Every entry runs `montero schedule run JOB`, which runs the job's command,
writes its outcome (time, exit code, summary) to `logs/schedule/JOB.json` and, on failure,
POSTs it as JSON to MONTERO_NOTIFY_URL. `schedule status` and `doctor` read those records:
a failed last run, or a last success older than the job's period, is a failure.

Where systemd runs (/run/systemd/system exists) the entries are user timer units;
elsewhere they are lines in the user's crontab between markers naming the project.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from montero_ops.errors import CommandFailed, UsageError
from montero_ops.project import Project

DAY = 86400
WEEK = 7 * DAY
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SUMMARY_CHARS = 400


@dataclass(frozen=True)
class When:
    """A time of day, optionally on one weekday: enough for daily and weekly jobs."""

    hour: int
    minute: int
    weekday: int | None = None  # 0 = Monday

    @property
    def period(self) -> int:
        return WEEK if self.weekday is not None else DAY

    def cron(self) -> str:
        dow = "*" if self.weekday is None else str((self.weekday + 1) % 7)  # cron: 0 = Sunday
        return f"{self.minute} {self.hour} * * {dow}"

    def systemd(self) -> str:
        day = "" if self.weekday is None else WEEKDAYS[self.weekday].capitalize() + " "
        return f"{day}*-*-* {self.hour:02d}:{self.minute:02d}:00"

    def describe(self) -> str:
        day = "daily" if self.weekday is None else WEEKDAYS[self.weekday]
        return f"{day} {self.hour:02d}:{self.minute:02d}"


def parse_time(text: str) -> tuple[int, int]:
    try:
        hh, mm = text.strip().split(":")
        hour, minute = int(hh), int(mm)
    except ValueError:
        hour = minute = -1
    if not (0 <= hour < 24 and 0 <= minute < 60):
        raise UsageError(f"not a time of day: {text!r}", hint="use HH:MM, e.g. 03:15")
    return hour, minute


def parse_weekday(text: str) -> int:
    key = text.strip().lower()[:3]
    if key not in WEEKDAYS:
        raise UsageError(f"not a weekday: {text!r}", hint="use mon, tue, wed, thu, fri, sat or sun")
    return WEEKDAYS.index(key)


@dataclass(frozen=True)
class JobSpec:
    """One kind of scheduled job. `argv` builds the montero arguments (global options excluded)
    from the project, so a job can depend on configuration (backup pushes when offsite is set)."""

    name: str
    description: str
    argv: Callable[[Project], list[str]]
    default: When
    enabled_by_default: bool = True
    # Decides "enabled by default" from the project instead, when set (renew: a certbot certificate exists).
    enabled_for: Callable[[Project], bool] | None = None

    def on_by_default(self, project: Project) -> bool:
        return self.enabled_for(project) if self.enabled_for is not None else self.enabled_by_default


JOBS: dict[str, JobSpec] = {}


def register_job(spec: JobSpec) -> None:
    """Add (or replace) a job kind; `schedule install --JOB HH:MM` and status pick it up."""
    JOBS[spec.name] = spec


def _offsite_configured(project: Project) -> bool:
    from montero_ops.services.envfile import parse_env

    values = parse_env(project.env_file.read_text(errors="replace")) if project.env_file.is_file() else {}
    return bool(values.get("MONTERO_OFFSITE_REPOSITORY") or os.environ.get("MONTERO_OFFSITE_REPOSITORY"))


register_job(JobSpec("backup", "back up (and push offsite when configured)",
                     lambda p: ["backup", "--push"] if _offsite_configured(p) else ["backup"], When(3, 15)))
RETENTION = ["--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "6"]
register_job(JobSpec("prune", "apply retention (7 daily, 4 weekly, 6 monthly) to local and offsite backups",
                     lambda p: ["backups", "prune", *RETENTION, *(["--offsite"] if _offsite_configured(p) else []),
                                "--yes"], When(4, 15)))
register_job(JobSpec("drill", "restore drill of the newest backup (offsite when configured)",
                     lambda p: ["backups", "drill", "--latest", *(["--offsite"] if _offsite_configured(p) else [])],
                     When(5, 15, weekday=6), enabled_by_default=False))
def _acme_certificates(project: Project) -> bool:
    """certbot manages a certificate for this project (`tls issue` ran): its renewal conf exists."""
    from montero_ops.services.acme import config_dir

    folder = config_dir(project) / "renewal"
    return folder.is_dir() and any(folder.glob("*.conf"))


# On by default once `tls issue` has made a certificate: `schedule install` alone then renews it
# (issue 19 point 3); a self-signed or hand-installed pair has nothing for certbot to renew.
register_job(JobSpec("renew", "renew TLS certificates that are due (certbot), reload nginx",
                     lambda p: ["tls", "renew"], When(2, 45), enabled_by_default=False, enabled_for=_acme_certificates))


@dataclass
class Entry:
    job: str
    when: When
    command: list[str]  # the full command line the scheduler runs

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "schedule": self.when.describe(), "cron": self.when.cron(),
                "period_seconds": self.when.period, "command": shlex.join(self.command)}


def montero_command(project: Project) -> list[str]:
    """How a scheduler starts montero for this project: this interpreter, absolute paths only
    (cron and systemd run with an almost empty environment and another working folder)."""
    return [sys.executable, "-m", "montero_ops", "--project-dir", str(project.root),
            "--project-name", project.name]


def run_command(project: Project, job: str) -> list[str]:
    return montero_command(project) + ["schedule", "run", job]


def plan(project: Project, times: dict[str, When | None]) -> list[Entry]:
    """Entries for the given jobs: a When to schedule it, None to leave it out; jobs not named
    get their default when enabled by default."""
    for name in times:
        if name not in JOBS:
            raise UsageError(f"unknown job {name!r}", hint=f"jobs: {', '.join(JOBS)}")
    entries = []
    for name, spec in JOBS.items():
        when = times.get(name, spec.default if spec.on_by_default(project) else None)
        if when is not None:
            entries.append(Entry(name, when, run_command(project, name)))
    return entries


# -- cron ------------------------------------------------------------------------------------------
def _markers(project: Project) -> tuple[str, str]:
    tag = f"montero:{project.name}:{project.root}"
    return f"# BEGIN {tag}", f"# END {tag}"


def cron_block(project: Project, entries: list[Entry]) -> str:
    begin, end = _markers(project)
    lines = [begin]
    for e in entries:
        lines.append(f"# {e.job}: {JOBS[e.job].description}")
        # cron's PATH is /usr/bin:/bin: docker and restic live there on Debian, but say it.
        lines.append(f"{e.when.cron()} PATH=/usr/local/bin:/usr/bin:/bin {shlex.join(e.command)} >/dev/null 2>&1")
    lines.append(end)
    return "\n".join(lines) + "\n"


def strip_block(crontab: str, project: Project) -> str:
    begin, end = _markers(project)
    out, inside = [], False
    for line in crontab.splitlines():
        if line == begin:
            inside = True
        elif line == end and inside:
            inside = False
        elif not inside:
            out.append(line)
    text = "\n".join(out).strip("\n")
    return text + "\n" if text else ""


def read_crontab() -> str:
    proc = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else ""  # "no crontab for user" is exit 1


def write_crontab(text: str) -> None:
    proc = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CommandFailed(f"crontab refused the entries: {proc.stderr.strip()}", hint="is cron installed?")


# -- systemd ---------------------------------------------------------------------------------------
def systemd_present() -> bool:
    return Path("/run/systemd/system").is_dir()


def unit_name(project: Project, job: str) -> str:
    return f"montero-{project.name}-{job}"


def systemd_units(project: Project, entry: Entry) -> dict[str, str]:
    """The .service and .timer files for one entry (user units; Persistent= catches up missed runs)."""
    name = unit_name(project, entry.job)
    service = (
        "[Unit]\n"
        f"Description=montero {entry.job} for {project.name} ({JOBS[entry.job].description})\n\n"
        "[Service]\nType=oneshot\n"
        f"WorkingDirectory={project.root}\n"
        f"ExecStart={shlex.join(entry.command)}\n"
    )
    timer = (
        "[Unit]\n"
        f"Description=montero {entry.job} for {project.name}, {entry.when.describe()}\n\n"
        "[Timer]\n"
        f"OnCalendar={entry.when.systemd()}\nPersistent=true\nUnit={name}.service\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {f"{name}.service": service, f"{name}.timer": timer}


def systemd_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


# -- installed state -------------------------------------------------------------------------------
def state_file(project: Project) -> Path:
    return schedule_dir(project) / "installed.json"


def schedule_dir(project: Project) -> Path:
    return project.logs_dir / "schedule"


@dataclass
class InstallResult:
    backend: str  # "cron" | "systemd"
    entries: list[Entry]
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "entries": [e.to_dict() for e in self.entries], "files": self.files}


def install(project: Project, entries: list[Entry], backend: str | None = None) -> InstallResult:
    backend = backend or ("systemd" if systemd_present() else "cron")
    remove(project)  # one set of entries per project: reinstalling replaces, never duplicates
    result = InstallResult(backend, entries)
    if backend == "systemd":
        folder = systemd_dir()
        folder.mkdir(parents=True, exist_ok=True)
        for entry in entries:
            for fname, text in systemd_units(project, entry).items():
                (folder / fname).write_text(text)
                result.files.append(str(folder / fname))
        subprocess.run(["systemctl", "--user", "daemon-reload"], check=False, capture_output=True)
        for entry in entries:
            subprocess.run(["systemctl", "--user", "enable", "--now", unit_name(project, entry.job) + ".timer"],
                           check=False, capture_output=True)
    else:
        write_crontab(strip_block(read_crontab(), project) + cron_block(project, entries))
    folder = schedule_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    state_file(project).write_text(json.dumps({**result.to_dict(), "installed_at": _now()}, indent=2) + "\n")
    return result


def installed(project: Project) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(state_file(project).read_text())
        return data
    except (OSError, ValueError):
        return None


def remove(project: Project) -> list[str]:
    """Remove this project's entries (cron block and/or unit files); returns what went."""
    gone: list[str] = []
    current = read_crontab()
    stripped = strip_block(current, project)
    if stripped != current and current:
        write_crontab(stripped)
        gone.append("crontab entries")
    data = installed(project)
    for fname in (data or {}).get("files", []):
        path = Path(fname)
        if path.suffix == ".timer":
            subprocess.run(["systemctl", "--user", "disable", "--now", path.name], check=False, capture_output=True)
        if path.exists():
            path.unlink()
            gone.append(str(path))
    state_file(project).unlink(missing_ok=True)
    return gone


# -- run records -----------------------------------------------------------------------------------
@dataclass
class RunRecord:
    job: str
    started_at: str
    finished_at: str
    exit_code: int
    seconds: float
    summary: str
    command: str
    last_success_at: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def record_path(project: Project, job: str) -> Path:
    return schedule_dir(project) / f"{job}.json"


def read_record(project: Project, job: str) -> RunRecord | None:
    try:
        return RunRecord(**json.loads(record_path(project, job).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _summary(stdout: str, stderr: str, code: int) -> str:
    from montero_ops.services import redact

    lines = [ln.strip() for ln in (stderr + "\n" + stdout).splitlines() if ln.strip()]
    # A failure is explained by its error line (the red line montero prints); a success by its last line.
    pick = [ln for ln in lines if ln.lower().startswith(("error", "✘"))] if code else []
    text = (pick or lines or [f"exit {code}"])[-1]
    return redact.redact_text(text)[:SUMMARY_CHARS]


def run_job(project: Project, job: str, timeout: float = 6 * 3600) -> RunRecord:
    """Run one job now, as the scheduler does: record its outcome, notify on failure."""
    if job not in JOBS:
        raise UsageError(f"unknown job {job!r}", hint=f"jobs: {', '.join(JOBS)}")
    cmd = montero_command(project) + JOBS[job].argv(project)
    previous = read_record(project, job)
    started, t0 = _now(), time.monotonic()
    env = {**os.environ, "NO_COLOR": "1"}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              cwd=project.root, env=env)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired:
        code, out, err = 124, "", f"error: timed out after {timeout:.0f} s"
    finished = _now()
    record = RunRecord(job, started, finished, code, round(time.monotonic() - t0, 2), _summary(out, err, code),
                       shlex.join(JOBS[job].argv(project)),
                       finished if code == 0 else (previous.last_success_at if previous else None))
    folder = schedule_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = record_path(project, job).with_suffix(".tmp")
    tmp.write_text(json.dumps(record.to_dict(), indent=2) + "\n")
    tmp.replace(record_path(project, job))
    with (folder / "history.jsonl").open("a") as fh:
        fh.write(json.dumps(record.to_dict()) + "\n")
    if not record.ok:
        notify(project, record)
    return record


def notify_url(project: Project) -> str | None:
    from montero_ops.services.envfile import parse_env

    values = parse_env(project.env_file.read_text(errors="replace")) if project.env_file.is_file() else {}
    return os.environ.get("MONTERO_NOTIFY_URL") or values.get("MONTERO_NOTIFY_URL") or None


def notify(project: Project, record: RunRecord) -> bool:
    """POST the failed run as JSON to MONTERO_NOTIFY_URL; a dead webhook is noted, not fatal."""
    url = notify_url(project)
    if not url:
        return False
    body = json.dumps({"project": project.name, "event": "schedule.failed", **record.to_dict()}).encode()
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return bool(200 <= resp.status < 300)
    except OSError as exc:
        with (schedule_dir(project) / "notify-errors.log").open("a") as fh:
            fh.write(f"{_now()} {record.job}: webhook failed: {type(exc).__name__}\n")
        return False


@dataclass
class JobStatus:
    job: str
    schedule: str | None
    period_seconds: int | None
    last: RunRecord | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"job": self.job, "schedule": self.schedule, "period_seconds": self.period_seconds,
                "last_run": self.last.to_dict() if self.last else None, "problem": self.problem}


def _age(ts: str, now: float) -> float:
    return now - datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def status(project: Project, now: float | None = None) -> tuple[str | None, list[JobStatus]]:
    """(backend or None when nothing is installed, one JobStatus per installed or recorded job)."""
    now = time.time() if now is None else now
    data = installed(project)
    entries = {e["job"]: e for e in (data or {}).get("entries", [])}
    names = list(entries) + [n for n in JOBS if n not in entries and record_path(project, n).exists()]
    out = []
    for name in names:
        entry = entries.get(name)
        period = int(entry["period_seconds"]) if entry else None
        last = read_record(project, name)
        problem = None
        if last and not last.ok:
            problem = f"last run failed (exit {last.exit_code}) at {last.finished_at}: {last.summary}"
        elif entry and period:
            # One period plus an hour's grace: a daily 03:15 job is late at 04:15 the day after.
            since = last.last_success_at if last else None
            installed_at = (data or {}).get("installed_at")
            if since is None and installed_at and _age(installed_at, now) > period + 3600:
                problem = "never succeeded since it was installed"
            elif since is not None and _age(since, now) > period + 3600:
                problem = f"last success {since} is older than its period ({period // 3600} h)"
        out.append(JobStatus(name, entry["schedule"] if entry else None, period, last, problem))
    return (data or {}).get("backend"), out
