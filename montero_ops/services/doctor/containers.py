"""Checks 6-7: restart loops and the health of every service, with the logs that explain them.

Read from `docker inspect` documents (State.Restarting, RestartCount, ExitCode, OOMKilled,
Health.Log) and the last 50 log lines, through the Engine API. A crash loop's log is
also read for a known cause, so the fix names the setting rather than "look at the logs".
"""

from __future__ import annotations

import re
from typing import Any

from montero_ops.services.doctor.context import Context, container_name
from montero_ops.services.doctor.finding import Finding, Repair, failed, passed, skipped, warned

LOG_LINES = 50
LOOP_COUNT = 3
KEYGEN = 'python -c "import secrets; print(secrets.token_hex(32))"'

# (pattern in the log, fix) — the causes the troubleshooting chapter names, most specific first.
KNOWN_CAUSES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"SECRET_KEY", re.IGNORECASE), f"set a strong SECRET_KEY in .env ({KEYGEN}), then montero up"),
    (
        re.compile(
            r"/app/(data|logs)\S* is not writable|unable to open database file|attempt to write a readonly database"
            r"|Permission denied: '/app/(data|logs)",
            re.IGNORECASE,
        ),
        "sudo chown -R 1000:1000 data logs   # the app runs as uid 1000",
    ),
    (
        re.compile(r"database is locked", re.IGNORECASE),
        "keep SQLite in WAL mode, lower GUNICORN_WORKERS, or move to PostgreSQL (DATABASE_URL)",
    ),
    (
        re.compile(r"database disk image is malformed|file is not a database", re.IGNORECASE),
        "montero restore sqlite --latest",
    ),
    (
        re.compile(r"Can't locate revision|alembic.*(error|failed)", re.IGNORECASE),
        "montero migrate current   # the database revision does not match the code",
    ),
    (
        re.compile(r"Address already in use", re.IGNORECASE),
        "another process holds the port inside the container: check the command/ports",
    ),
    (
        re.compile(r"ModuleNotFoundError|ImportError", re.IGNORECASE),
        "rebuild the image: montero build app && montero up",
    ),
    (re.compile(r"redis.*(refused|timed out|not reachable)", re.IGNORECASE), "montero start redis"),
]


def expected_services(ctx: Context) -> list[str]:
    config = ctx.compose_config()
    if config and isinstance(config.get("services"), dict):
        return list(config["services"])
    return ["app", "redis"] + (["nginx"] if ctx.production else [])


def diagnose(log: str) -> tuple[str, str] | None:
    """(the log line that names the cause, its fix), scanning from the newest line."""
    for line in reversed(log.splitlines()):
        for pattern, fix in KNOWN_CAUSES:
            if pattern.search(line):
                return line.strip()[:200], fix
    return None


def health_outputs(container: dict[str, Any], last: int = 3) -> list[str]:
    log = ((container.get("State") or {}).get("Health") or {}).get("Log") or []
    out = []
    for entry in log[-last:]:
        # A probe's output is often a whole traceback: its last line says what failed.
        lines = [ln.strip() for ln in str(entry.get("Output", "")).splitlines() if ln.strip()]
        out.append(f"probe exit {entry.get('ExitCode')}: {(lines[-1] if lines else '(no output)')[:300]}")
    return out


def _tail(ctx: Context, container: dict[str, Any]) -> str:
    assert ctx.engine is not None
    try:
        return ctx.scrub(ctx.engine.logs_tail(container["Id"], LOG_LINES))
    except Exception:  # noqa: BLE001 - logs are evidence, not the verdict: a failing read must not hide the finding
        return ""


def check_restarts(ctx: Context) -> list[Finding]:
    findings = []
    for service in expected_services(ctx):
        containers = ctx.service_containers(service)
        if not containers:
            findings.append(skipped(f"restarts.{service}", f"{service} has no container (stack not up)"))
            continue
        worst = max(containers, key=lambda c: (bool(c["State"].get("Restarting")), c.get("RestartCount", 0)))
        state, count, name = worst["State"], int(worst.get("RestartCount", 0)), container_name(worst)
        if not state.get("Restarting") and count == 0:
            findings.append(passed(f"restarts.{service}", f"{name} has not restarted"))
            continue
        # Docker resets ExitCode while a container runs: only a stopped one has a meaningful last exit.
        facts = [f"restarts: {count}"]
        if not state.get("Running"):
            facts.append(f"last exit code {state.get('ExitCode')}")
        if state.get("OOMKilled"):
            facts.append("killed: out of memory")
        log = _tail(ctx, worst)
        detail = [f"last {LOG_LINES} log lines of {name}:"] + log.splitlines()[-LOG_LINES:] + health_outputs(worst)
        cause = diagnose(log)
        why = f"; log says: {ctx.scrub(cause[0])}" if cause else ""
        fix = (
            cause[1] if cause else f"montero logs {service} --tail {LOG_LINES}   # fix the error shown, then montero up"
        )
        if state.get("OOMKilled"):
            fix = "raise the memory limit (MONTERO_APP_MEMORY in .env), then montero up"
        if state.get("Restarting") or count >= LOOP_COUNT:
            findings.append(
                failed(
                    f"restarts.{service}",
                    f"{name} is restarting in a loop ({', '.join(facts)}){why}",
                    fix,
                    detail=detail,
                )
            )
        else:
            findings.append(
                warned(
                    f"restarts.{service}",
                    f"{name} restarted {count} time(s) ({', '.join(facts[1:]) or 'now running'}){why}",
                    fix,
                    detail=detail,
                )
            )
    return findings


def _start_repair(ctx: Context, service: str) -> Repair:
    def apply() -> str:
        from montero_ops.client import build_client

        build_client(ctx.project).compose.start([service])
        return f"started {service}"

    return Repair(f"start the stopped service {service}", apply, safe=True)


def check_health(ctx: Context) -> list[Finding]:
    findings = []
    services = expected_services(ctx)
    for service in services:
        containers = ctx.service_containers(service)
        check_id = f"health.{service}"
        if not containers:
            findings.append(warned(check_id, f"{service} is not running (no container)", "montero up"))
            continue
        verdicts = [_verdict(ctx, check_id, service, c) for c in containers]
        rank = {"fail": 2, "warn": 1, "pass": 0}
        findings.append(max(verdicts, key=lambda f: rank[f.status.value]))
    return findings


def _verdict(ctx: Context, check_id: str, service: str, c: dict[str, Any]) -> Finding:
    state, name = c["State"], container_name(c)
    status = state.get("Status", "?")
    health = (state.get("Health") or {}).get("Status")
    if state.get("Restarting"):
        return failed(
            check_id, f"{name} is restarting (see restarts.{service})", f"montero logs {service} --tail {LOG_LINES}"
        )
    if not state.get("Running"):
        repair = _start_repair(ctx, service)
        return failed(
            check_id,
            f"{name} is {status} (exit code {state.get('ExitCode')})",
            f"montero start {service}",
            repair=repair,
        )
    if health == "unhealthy":
        probes = health_outputs(c)
        last = ctx.scrub(probes[-1]) if probes else "no probe output"
        return failed(
            check_id,
            f"{name} is unhealthy: {last}",
            f"montero logs {service} --tail {LOG_LINES}   # then montero restart {service}",
            detail=[ctx.scrub(p) for p in probes],
        )
    if health == "starting":
        return warned(
            check_id, f"{name} is still starting (health probe not passed yet)", "montero health   # again in a minute"
        )
    return passed(check_id, f"{name} is {health or 'running (no healthcheck)'}")
