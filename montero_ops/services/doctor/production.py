"""Check 12 (`--production`): the documented security checklist, one finding per item.

Static items are read from `docker compose config` with the production profile (so they
hold with the stack down); runtime items (nginx listening on 443, container users) from
the running containers when there are some.
"""

from __future__ import annotations

from typing import Any

from montero_ops.services import redact
from montero_ops.services.doctor.context import Context, container_name, parse_env_file
from montero_ops.services.doctor.data import check_backups
from montero_ops.services.doctor.finding import Finding, failed, passed, skipped, warned
from montero_ops.services.envfile import is_placeholder

HTTPS_PORT_HEX = ":01BB"  # 443 in /proc/net/tcp
ROTATING_DRIVERS = {"local", "journald", "syslog", "gelf", "fluentd", "awslogs", "splunk", "none"}


def _services(ctx: Context) -> dict[str, Any] | None:
    config = ctx.compose_config()
    services = (config or {}).get("services")
    return services if isinstance(services, dict) else None


def check_production(ctx: Context) -> list[Finding]:
    if not ctx.production:
        return []
    return [
        _https(ctx),
        *_renewal(ctx),
        _ratelimit(ctx),
        *check_backups(ctx, "prod.backups"),
        _logging(ctx),
        _limits(ctx),
        _nonroot(ctx),
        _secrets(ctx),
    ]


def _https(ctx: Context) -> Finding:
    from montero_ops.services.tls import CERT_NAME, KEY_NAME, certs_dir

    folder = certs_dir(ctx.project)
    missing = [n for n in (CERT_NAME, KEY_NAME) if not (folder / n).exists()]
    if missing:
        return failed(
            "prod.https",
            f"no TLS certificate in {folder} ({', '.join(missing)} missing)",
            "montero tls issue --domain example.com --email you@example.com   # or montero tls self-signed",
        )
    nginx = ctx.running("nginx") if ctx.docker_up else None
    if nginx is None or ctx.engine is None:
        return warned(
            "prod.https",
            "certificates present, but nginx is not running to serve them",
            "montero up --profile production",
        )
    from montero_ops.services.doctor.connectivity import probe

    code, out = probe(ctx, nginx, ["cat", "/proc/net/tcp", "/proc/net/tcp6"]) or (-1, "")
    listening = code == 0 and any(
        HTTPS_PORT_HEX in line.split()[1] and line.split()[3] == "0A"
        for line in out.splitlines()[1:]
        if len(line.split()) > 3 and ":" in line.split()[1]
    )
    if not listening:
        return failed(
            "prod.https",
            f"{container_name(nginx)} is not listening on 443 although certificates exist",
            "montero restart nginx   # nginx enables HTTPS only when the certificate pair exists at start",
        )
    return passed("prod.https", f"certificates present and {container_name(nginx)} listens on 443")


RENEW_BEFORE_DAYS = 14
RENEW_INSTALL = "montero schedule install --job renew=02:45   # keep your other jobs' times"


def _renewal(ctx: Context) -> list[Finding]:
    """A CA-issued certificate must not be near expiry, and its renewal must be scheduled and
    working (the `renew` job's run record). Self-signed or unreadable pairs: nothing to renew."""
    from montero_ops.errors import MonteroError
    from montero_ops.services import schedule, tls

    try:
        cert = tls.status(ctx.project)
    except MonteroError:
        return []
    if not cert.present or cert.self_signed:
        return []
    if cert.days_left is not None and cert.days_left < RENEW_BEFORE_DAYS:
        return [failed("prod.renewal", f"certificate for {', '.join(cert.domains)} expires in {cert.days_left} "
                       f"day(s) ({cert.not_after}, issuer {cert.issuer})",
                       "montero tls renew   # then check the renew job: montero schedule status")]
    data = schedule.installed(ctx.project) or {}
    if not any(e.get("job") == "renew" for e in data.get("entries", [])):
        return [failed("prod.renewal", "no certificate renewal is scheduled", RENEW_INSTALL)]
    last = schedule.read_record(ctx.project, "renew")
    if last is not None and not last.ok:
        return [failed("prod.renewal", f"the last scheduled renewal failed (exit {last.exit_code}) at "
                       f"{last.finished_at}: {last.summary}",
                       "fix the cause above, then montero schedule run renew   # see logs/schedule/renew.json")]
    when = f"last ok {last.finished_at}" if last else "not run yet"
    return [passed("prod.renewal", f"certificate valid {cert.days_left} more day(s); renewal scheduled, {when}")]


def _ratelimit(ctx: Context) -> Finding:
    services = _services(ctx) or {}
    env = (services.get("app") or {}).get("environment") or {}
    url = str(env.get("RATELIMIT_STORAGE_URL") or ctx.setting("RATELIMIT_STORAGE_URL", ""))
    if url.startswith(("redis://", "rediss://")):
        return passed("prod.ratelimit", f"rate limits shared through Redis ({redact.redact_url(url)})")
    return failed(
        "prod.ratelimit",
        f"rate limits kept in memory per worker (RATELIMIT_STORAGE_URL={url or 'unset'})",
        "set RATELIMIT_STORAGE_URL=redis://redis:6379/0 in .env, then montero up",
    )


def _logging(ctx: Context) -> Finding:
    services = _services(ctx)
    if services is None:
        return skipped("prod.logging", "`docker compose config` unavailable")
    bad = []
    for name, svc in services.items():
        logging = svc.get("logging") or {}
        driver = logging.get("driver", "json-file")
        if driver in ROTATING_DRIVERS:
            continue
        if not (logging.get("options") or {}).get("max-size"):
            bad.append(name)
    if bad:
        return failed(
            "prod.logging",
            f"no log rotation for: {', '.join(bad)} (json-file without max-size grows forever)",
            'add `logging: {driver: json-file, options: {max-size: "10m", max-file: "3"}}`'
            " to those services in docker/compose.yml",
        )
    return passed("prod.logging", f"log rotation set on every service ({', '.join(services)})")


def _limits(ctx: Context) -> Finding:
    services = _services(ctx)
    if services is None:
        return skipped("prod.limits", "`docker compose config` unavailable")
    bad = [
        name
        for name, svc in services.items()
        if not (((svc.get("deploy") or {}).get("resources") or {}).get("limits") or {}).get("memory")
        and not svc.get("mem_limit")
    ]
    if bad:
        return failed(
            "prod.limits",
            f"no memory limit for: {', '.join(bad)}",
            "add deploy.resources.limits (cpus, memory) to those services in docker/compose.yml",
        )
    return passed("prod.limits", "CPU/memory limits set on every service")


def _nonroot(ctx: Context) -> Finding:
    if not ctx.docker_up:
        return skipped("prod.nonroot", "Docker not reachable")
    running = [c for c in ctx.containers() if (c.get("State") or {}).get("Running")]
    if not running:
        return skipped("prod.nonroot", "no running containers to inspect (montero up --profile production)")
    root = [c for c in running if str((c.get("Config") or {}).get("User") or "root").split(":")[0] in ("", "root", "0")]
    app_root = [container_name(c) for c in root if _service(c) == "app"]
    others = [container_name(c) for c in root if _service(c) != "app"]
    if app_root:
        return failed(
            "prod.nonroot",
            f"the app runs as root in {', '.join(app_root)}",
            "rebuild with the Dockerfile's USER appuser (uid 1000): montero deploy",
        )
    if others:
        return warned(
            "prod.nonroot",
            f"running as root: {', '.join(others)} (the app itself is non-root)",
            "set `user:` for those services in docker/compose.yml where their image supports it",
        )
    return passed("prod.nonroot", "every container runs as a non-root user")


def _service(c: dict[str, Any]) -> str:
    return str(((c.get("Config") or {}).get("Labels") or {}).get("com.docker.compose.service", ""))


def _secrets(ctx: Context) -> Finding:
    env = ctx.env_file_values
    example = parse_env_file(ctx.project.env_example) if ctx.project.env_example.is_file() else {}
    bad = sorted(
        name
        for name, value in env.items()
        if redact.is_secret(name) and value and (value == example.get(name) or is_placeholder(ctx.project, value))
    )
    if bad:
        return failed(
            "prod.secrets",
            f"default or placeholder values for: {', '.join(bad)}",
            'set real values in .env (SECRET_KEY: python -c "import secrets; print(secrets.token_hex(32))")',
        )
    return passed("prod.secrets", "no default secrets in .env")
