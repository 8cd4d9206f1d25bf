"""Check 4: free space where Docker keeps its data and where the project keeps data/logs/backups,
and what `docker system df` says could be reclaimed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from montero_ops.output import size
from montero_ops.services.doctor.context import Context, run_cmd
from montero_ops.services.doctor.finding import Finding, Repair, failed, passed, skipped, warned

GIB = 1024**3
FAIL_FREE, FAIL_PCT = 1 * GIB, 3.0
WARN_FREE, WARN_PCT = 5 * GIB, 10.0
RECLAIM_WARN = 2 * GIB
PRUNE = "docker builder prune -f && docker image prune -f   # more: montero prune --all"


def judge(check_id: str, where: str, path: Path, fix: str) -> Finding:
    usage = shutil.disk_usage(path)
    pct = 100.0 * usage.free / usage.total if usage.total else 0.0
    text = f"{where} ({path}): {size(usage.free)} free of {size(usage.total)} ({pct:.0f}%)"
    if usage.free < FAIL_FREE or pct < FAIL_PCT:
        return failed(check_id, text, fix)
    if usage.free < WARN_FREE or pct < WARN_PCT:
        return warned(check_id, text, fix)
    return passed(check_id, text)


def reclaimable(df: dict[str, Any]) -> dict[str, int]:
    """Bytes `docker system prune`-style commands would free, by kind."""
    # An unused image frees its own layers only; SharedSize is -1 when the engine did not compute it.
    images = sum(
        max(int(i.get("Size", 0)) - max(int(i.get("SharedSize", 0) or 0), 0), 0)
        for i in df.get("Images") or []
        if int(i.get("Containers", 0)) == 0
    )
    containers = sum(int(c.get("SizeRw", 0) or 0) for c in df.get("Containers") or [] if c.get("State") != "running")
    volumes = sum(
        int((v.get("UsageData") or {}).get("Size", 0) or 0)
        for v in df.get("Volumes") or []
        if int((v.get("UsageData") or {}).get("RefCount", 1) or 0) == 0
    )
    cache = sum(int(b.get("Size", 0) or 0) for b in df.get("BuildCache") or [] if not b.get("InUse"))
    return {"images": images, "containers": containers, "volumes": volumes, "build cache": cache}


def _prune_cache_repair(ctx: Context) -> Repair:
    def apply() -> str:
        code, out, err = run_cmd(["docker", "builder", "prune", "-f"], 120)
        last = (out.strip().splitlines() or ["done"])[-1]
        return f"docker builder prune -f: {last}" if code == 0 else f"docker builder prune failed: {err.strip()[:200]}"

    return Repair("remove dangling build cache (docker builder prune -f)", apply, safe=True)


def check_disk(ctx: Context) -> list[Finding]:
    findings: list[Finding] = []
    root_dir: Path | None = None
    if ctx.engine is not None:
        root_dir = Path(str(ctx.engine.info().get("DockerRootDir", "/var/lib/docker")))
    if root_dir is None:
        findings.append(skipped("disk.docker", "Docker not reachable"))
    elif not root_dir.exists():
        findings.append(skipped("disk.docker", f"{root_dir} is not on this host (remote engine or rootless)"))
    else:
        findings.append(judge("disk.docker", "Docker data", root_dir, PRUNE))
    project_paths = {ctx.project.root}
    for extra in (ctx.project.data_dir, ctx.project.logs_dir, ctx.project.backups_dir):
        if extra.exists():
            project_paths.add(extra)
    by_device: dict[int, Path] = {}
    for p in sorted(project_paths):
        by_device.setdefault(p.stat().st_dev, p)
    prune_backups = "montero backups prune --keep 7   # and rotate logs: truncate or delete old logs/*.log.N"
    worst = [judge("disk.project", "project data/logs/backups", p, prune_backups) for p in by_device.values()]
    rank = {"fail": 2, "warn": 1, "pass": 0}
    findings.append(max(worst, key=lambda f: rank[f.status.value]))
    if ctx.engine is None:
        findings.append(skipped("disk.reclaimable", "Docker not reachable"))
        return findings
    parts = reclaimable(ctx.engine.system_df())
    total = sum(parts.values())
    shown = ", ".join(f"{k} {size(v)}" for k, v in parts.items() if v)
    text = f"{size(total)} reclaimable by pruning" + (f" ({shown})" if shown else "")
    low_disk = any(f.status.value != "pass" for f in findings if f.id == "disk.docker")
    if total >= RECLAIM_WARN or (low_disk and total > 0):
        repair = _prune_cache_repair(ctx) if parts["build cache"] else None
        findings.append(warned("disk.reclaimable", text, PRUNE, repair=repair))
    else:
        findings.append(passed("disk.reclaimable", text))
    return findings
