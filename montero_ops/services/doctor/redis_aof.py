"""Check data.redis_aof: is Redis's append-only file whole?

A damaged AOF either stops Redis from starting ("Bad file format reading the append only
file": it crash-loops) or, when only its end is cut, is loaded anyway
(`aof-load-truncated yes`, the default): Redis drops every write after the cut, truncates the
file and starts green. So two sources are read:

- `redis-check-aof` on a copy of the volume's files, in a throwaway container of the redis
  image (the volume read-only, no network, no capability but reading): it names the damaged
  file and the byte where the valid part ends;
- Redis's own log since its last start, for "short read while loading the AOF": the cut
  that Redis has already repaired by dropping the tail, which no file check can see any more.

A running Redis may be appending while the file is read: a failure is checked twice and only
reported when the damage stays where it was.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from typing import Any

from montero_ops.services.doctor.context import Context, run_cmd
from montero_ops.services.doctor.finding import Finding, failed, passed, skipped, warned

ID = "data.redis_aof"
# DATA overrides /data (tests run the same script on a local folder with the real redis-check-aof).
# redis-check-aof opens the files read-write even without --fix: it checks a copy, so the
# volume stays mounted read-only.
CHECK_SCRIPT = r"""
D="${DATA:-/data}"
W=$(mktemp -d)
m=$(ls "$D"/appendonlydir/*.manifest 2>/dev/null | head -n 1)
if [ -n "$m" ]; then cp -r "$D/appendonlydir" "$W/" && redis-check-aof "$W/appendonlydir/${m##*/}" 2>&1
  echo "montero-check-aof: exit=$? manifest=${m##*/}"
elif [ -e "$D/appendonly.aof" ]; then cp "$D/appendonly.aof" "$W/" && redis-check-aof "$W/appendonly.aof" 2>&1
  echo "montero-check-aof: exit=$? file=appendonly.aof"
else echo "montero-check-aof: none"; fi
rm -rf "$W"
"""
_ANALYZED = re.compile(r"AOF analyzed: filename=(?P<file>[^,]+), size=(?P<size>\d+), ok_up_to=(?P<ok>\d+), .*diff=(?P<diff>\d+)")
_SHORT_READ = re.compile(r"short read while loading the AOF file (?P<file>\S+?)!*$")
_TRUNCATED_AT = re.compile(r"Truncating the AOF (?P<file>\S+) at offset (?P<offset>\d+)")
STARTING = "Redis is starting"  # the first line Redis logs at every start


@dataclass
class CheckResult:
    state: str  # "valid" | "damaged" | "none" | "error"
    file: str = ""
    size: int = 0
    ok_up_to: int = 0
    line: str = ""  # what redis-check-aof said last
    manifest: str = ""


def parse_check(out: str) -> CheckResult:
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    marker = next((ln for ln in reversed(lines) if ln.startswith("montero-check-aof:")), "")
    if not marker:
        return CheckResult("error", line=(lines or ["no output"])[-1])
    if marker.endswith(": none"):
        return CheckResult("none")
    manifest = marker.partition("manifest=")[2]
    if "exit=0" in marker.split():
        return CheckResult("valid", manifest=manifest)
    said = [ln for ln in lines if not ln.startswith("montero-check-aof:")]
    result = CheckResult("damaged", line=(said or ["redis-check-aof failed"])[-1], manifest=manifest)
    for ln in said:
        match = _ANALYZED.search(ln)
        if match and int(match["diff"]) > 0:
            result.file, result.size, result.ok_up_to = match["file"], int(match["size"]), int(match["ok"])
    return result


def redis_data_volume(config: dict[str, Any], project_name: str) -> tuple[str, str] | None:
    """(volume name, image) of the redis service's named volume at /data, or None."""
    service = (config.get("services") or {}).get("redis") or {}
    for mount in service.get("volumes") or []:
        if isinstance(mount, dict) and mount.get("type") == "volume" and mount.get("target") == "/data":
            key = str(mount.get("source") or "")
            declared = (config.get("volumes") or {}).get(key) or {}
            return str(declared.get("name") or f"{project_name}_{key}"), str(service.get("image") or "")
    return None


def check_command(volume: str, image: str) -> list[str]:
    return ["docker", "run", "--rm", "--network", "none", "--user", "0", "--cap-drop", "ALL",
            "--cap-add", "DAC_READ_SEARCH", "--security-opt", "no-new-privileges:true", "--entrypoint", "sh",
            "--volume", f"{volume}:/data:ro", image, "-c", CHECK_SCRIPT]


def run_check(volume: str, image: str, timeout: float) -> CheckResult:
    try:
        code, out, err = run_cmd(check_command(volume, image), timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return CheckResult("error", line=str(exc) or type(exc).__name__)
    result = parse_check(out)
    if result.state == "error" and code != 0:
        result.line = (err.strip().splitlines() or [f"exit code {code}"])[-1]
    return result


def check_redis_aof(ctx: Context) -> list[Finding]:
    config = ctx.compose_config()
    if config is None:
        return [skipped(ID, "`docker compose config` failed (see config)")]
    found = redis_data_volume(config, ctx.project.name)
    if found is None:
        return [skipped(ID, "no redis service with a named volume at /data")]
    volume, image = found
    try:
        code, _, _ = run_cmd(["docker", "volume", "inspect", "--format", "{{.Name}}", volume], ctx.timeout / 4)
    except (OSError, subprocess.TimeoutExpired):
        code = 1
    if code != 0:
        return [skipped(ID, f"no Redis volume {volume} yet (the stack never ran)")]
    redis = ctx.running("redis")
    # Within doctor's per-check bound (1.5 x --timeout) even with the second look.
    budget = ctx.timeout * 0.4 if redis is not None else ctx.timeout * 0.8
    result = run_check(volume, image, budget)
    if result.state == "damaged" and redis is not None:
        # A running Redis appends while the file is read: damage that moves was a write in flight.
        again = run_check(volume, image, budget)
        if again.state != "damaged" or (again.file, again.ok_up_to) != (result.file, result.ok_up_to):
            result = again if again.state != "damaged" else CheckResult("valid")
    findings = [_file_finding(result, volume, image)]
    load = _load_warning(ctx)
    if load is not None:
        findings.append(load)
    return findings


def _file_finding(result: CheckResult, volume: str, image: str) -> Finding:
    if result.state == "none":
        return passed(ID, "Redis keeps no append-only file (appendonly off): nothing to check")
    if result.state == "valid":
        return passed(ID, "Redis's append-only file is valid (redis-check-aof)")
    if result.state == "error":
        return warned(ID, f"redis-check-aof could not run: {result.line}", "montero logs redis")
    target = f"/data/appendonlydir/{result.manifest}" if result.manifest else "/data/appendonly.aof"
    where = (f"{result.file} is valid only up to byte {result.ok_up_to} of {result.size}" if result.file
             else result.line)
    return failed(
        ID,
        f"Redis's append-only file is damaged: {where} (redis-check-aof). Redis refuses to start on it, "
        "or loads it cut and silently drops every write after that byte",
        "montero restore redis --latest --yes   # the damaged files are kept as a raw safety backup; "
        f"or keep the valid part (drops the rest): docker run --rm -it --user redis -v {volume}:/data {image} "
        f"redis-check-aof --fix {target}",
        detail=[f"redis-check-aof: {result.line}"] if result.line else [],
    )


def _load_warning(ctx: Context) -> Finding | None:
    """What Redis logged when it last loaded the AOF: a cut it repaired by dropping the tail."""
    containers = ctx.service_containers("redis")
    if ctx.engine is None or not containers:
        return None
    newest = max(containers, key=lambda c: str((c.get("State") or {}).get("StartedAt", "")))
    log = ctx.engine.logs_tail(str(newest["Id"]), 2000)
    lines = log.splitlines()
    starts = [i for i, ln in enumerate(lines) if STARTING in ln]
    since_start = lines[starts[-1]:] if starts else lines
    short = next((m for ln in since_start if (m := _SHORT_READ.search(ln.strip()))), None)
    if short is None:
        return None
    cut = next((m for ln in since_start if (m := _TRUNCATED_AT.search(ln))), None)
    at = f" at byte {cut['offset']}" if cut else ""
    return warned(
        "data.redis_aof_load",
        f"at its last start Redis loaded a cut append-only file ({short['file']} truncated{at}, "
        "aof-load-truncated): the writes after that point are gone although Redis is up",
        "if they matter, restore the newest backup: montero restore redis --latest --yes; "
        "then find why the file was cut (a full disk: see disk.*; a crash or power loss)",
    )
