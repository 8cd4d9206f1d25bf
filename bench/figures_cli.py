"""Figures 1-4 and 10: the CLI against the docker commands it replaces."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from bench.lib import BenchError, Settings, alternate, fmt_ratio, fmt_s, log, ratio, run
from bench.report import Figure, verdict
from bench.stack import Stack


def montero_python() -> str:
    """The interpreter montero runs under (its console script's shebang): the fair floor."""
    script = shutil.which("montero")
    if script:
        first = Path(script).read_text(errors="replace").splitlines()[0]
        if first.startswith("#!") and " " not in first[2:].strip():
            return first[2:].strip()
    return sys.executable


def import_profile(top: int = 8) -> str:
    """The slowest imports of `montero --help` (python -X importtime), for the notes."""
    proc = subprocess.run([montero_python(), "-X", "importtime", "-c",
                           "import sys; sys.argv=['montero','--help']\nfrom montero_ops.cli import main\n"
                           "try:\n main()\nexcept SystemExit: pass"],
                          capture_output=True, text=True, timeout=60)
    rows: list[tuple[int, str]] = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cum_us, name = line.split(":", 1)[1].split("|")
        rows.append((int(cum_us), name.rstrip()))
    # Top-level imports only (nested ones are indented under their importer).
    indent = min((len(n) - len(n.lstrip()) for _, n in rows), default=0)
    heavy = [r for r in sorted(rows, reverse=True) if len(r[1]) - len(r[1].lstrip()) == indent][:top]
    loaded = {name.strip().split(".")[0] for _, name in rows}
    flags = [m for m in ("python_on_whales", "docker", "pydantic", "rich") if m in loaded]
    text = ", ".join(f"`{n.strip()}` {us / 1000:.0f} ms" for us, n in heavy)
    return f"slowest imports (cumulative): {text}; heavy modules loaded: {', '.join(flags) or 'none'}"


def fig1(settings: Settings) -> Figure:
    fig = Figure(1, "`montero --help` / `--version` wall time", "faster than `docker compose version`")
    py = montero_python()
    floor = "python -c pass (floor)"
    steps = {
        "montero --help": ["montero", "--help"],
        "montero --version": ["montero", "--version"],
        floor: [py, "-c", "pass"],
        "docker compose version": ["docker", "compose", "version"],
    }
    runs = Settings(runs=max(settings.runs, 10), warmup=2)  # cheap commands: more runs
    samples = alternate(steps, runs)
    compose = samples["docker compose version"]
    fig.header = ["command", "median", "ratio to `docker compose version`"]
    fig.rows = [[f"`{n}`", fmt_s(s.median), fmt_ratio(ratio(s, compose))] for n, s in samples.items()]
    help_s, version_s = samples["montero --help"].median, samples["montero --version"].median
    fig.verdict = verdict(max(help_s, version_s) < compose.median)
    fig.summary = (f"--version {fmt_s(version_s)} ({'met' if version_s < compose.median else 'missed'}), "
                   f"--help {fmt_s(help_s)} ({'met' if help_s < compose.median else 'missed'}) vs "
                   f"`docker compose version` {fmt_s(compose.median)}; floor {fmt_s(samples[floor].median)}")
    fig.runs = runs.runs
    fig.notes.append(import_profile())
    return fig


def _ab_figure(number: int, title: str, target: str, a_name: str, a: list[str], b_name: str, b: list[str],
               settings: Settings, env: dict[str, str], limit: float) -> Figure:
    fig = Figure(number, title, target)
    runs = Settings(runs=max(settings.runs, 10), warmup=2)
    samples = alternate({a_name: a, b_name: b}, runs, env=env)
    r = ratio(samples[a_name], samples[b_name])
    fig.header = ["command", "median", "ratio"]
    fig.rows = [[f"`{a_name}`", fmt_s(samples[a_name].median), fmt_ratio(r)],
                [f"`{b_name}`", fmt_s(samples[b_name].median), "1.00"]]
    fig.verdict = verdict(r <= limit)
    fig.summary = f"{fmt_s(samples[a_name].median)} vs {fmt_s(samples[b_name].median)} (ratio {fmt_ratio(r)})"
    fig.runs = runs.runs
    return fig


def fig2(stack: Stack, settings: Settings, series: int = 3) -> Figure:
    """Three separate series (each a warm-up, then 10 alternating pairs): the target must hold in each."""
    a_name, b_name = "montero ps --json", "docker compose ps --format json"
    a, b = stack.montero_cmd("ps", "--json"), stack.compose_cmd("ps", "--format", "json")
    fig = Figure(2, "`montero ps --json` on the running stack",
                 "ratio ≤ 0.95 vs `docker compose ps --format json` in each of three separate runs")
    runs = Settings(runs=max(settings.runs, 10), warmup=2)
    fig.header = ["series", f"`{a_name}`", f"`{b_name}`", "ratio", "load (1 min)"]
    ratios = []
    for n in range(1, series + 1):
        samples = alternate({a_name: a, b_name: b}, runs, env=stack.env)
        r = ratio(samples[a_name], samples[b_name])
        ratios.append(r)
        fig.rows.append([str(n), fmt_s(samples[a_name].median), fmt_s(samples[b_name].median), fmt_ratio(r),
                         f"{os.getloadavg()[0]:.1f}"])
        time.sleep(2)  # separate series, not one long one
    fig.verdict = verdict(all(r <= 0.95 for r in ratios))
    fig.summary = "ratios " + ", ".join(fmt_ratio(r) for r in ratios) + f" ({fig.rows[-1][1]} vs {fig.rows[-1][2]} in the last)"
    fig.runs = runs.runs
    return fig


def fig3(stack: Stack, settings: Settings) -> Figure:
    """`montero health` vs `docker inspect` of the containers (ids known), and vs the pipeline a user types."""
    ids = stack.container_ids()
    if not ids:
        raise BenchError("the stack has no containers")
    fmt = "{{.Name}} {{.State.Health.Status}}"
    ps_q = " ".join(stack.compose_cmd("ps", "-q"))
    steps = {
        "montero health": stack.montero_cmd("health"),
        "docker inspect --format '{{.State.Health.Status}}' <ids>": ["docker", "inspect", "--format", fmt, *ids],
        "docker inspect --format … $(docker compose ps -q)": ["sh", "-c", f"docker inspect --format '{fmt}' $({ps_q})"],
    }
    runs = Settings(runs=max(settings.runs, 10), warmup=2)
    samples = alternate(steps, runs, env=stack.env)
    names = list(steps)
    base = samples[names[1]]
    fig = Figure(3, "`montero health`", "ratio ≤ 1.0 vs `docker inspect` of the stack's containers")
    fig.header = ["command", "median", "ratio to `docker inspect <ids>`"]
    fig.rows = [[f"`{n}`", fmt_s(v.median), fmt_ratio(ratio(v, base))] for n, v in samples.items()]
    r = ratio(samples[names[0]], base)
    r_pipe = ratio(samples[names[0]], samples[names[2]])
    fig.verdict = verdict(r <= 1.0)
    fig.summary = (f"{fmt_s(samples[names[0]].median)} vs {fmt_s(base.median)} (ratio {fmt_ratio(r)}; "
                   f"{fmt_ratio(r_pipe)} vs `docker inspect $(docker compose ps -q)`)")
    fig.runs = runs.runs
    fig.notes.append("`docker inspect <ids>` is given the container ids, found beforehand: a floor no command that "
                     "must first find the stack's containers can reach; the third row is what a user types")
    return fig


LOG_SCRIPT = ("import sys\nw = sys.stdout.write\nfor i in range({n}):\n"
              "    w(f'172.18.0.1 - - [28/Nov/2026:04:00:00 -0500] \"GET /api/clients?page={{i % 50}} HTTP/1.1\" "
              "200 1234 \"-\" \"bench/1.0\" line {{i}}\\n')\n")

# The app service with its command replaced by the log generator: a real compose-made
# container of the project's `app` service (compose ignores hand-labelled ones).
LOG_OVERRIDE = """services:
  app:
    entrypoint: {entrypoint}
    command: []
    healthcheck: {{disable: true}}
    restart: "no"
    depends_on: !reset {{}}
    ports: !reset []
    # The stack rotates app logs at 3 x 10 MB (~110k lines here): lift it, or the
    # "1 million lines" would be the last 110k.
    logging:
      driver: json-file
      options:
        max-size: "2g"
        max-file: "1"
"""


def fig10(settings: Settings, lines: int = 1_000_000) -> Figure:
    """The project's `app` service prints N lines (a tenth per start), then both commands read them."""
    stack = Stack("logs")
    chunk = lines // 10
    try:
        fig = Figure(10, f"`montero logs app --since 10m` over {lines:,} log lines",
                     "ratio ≤ 1.1, memory flat (not growing with the log)")
        override = stack.root / "bench-logs.override.yml"
        override.write_text(LOG_OVERRIDE.format(entrypoint=json.dumps(["python3", "-c", LOG_SCRIPT.format(n=chunk)])))
        run(_with_override(stack, override, "up", "-d", "--no-deps", "app"), env=stack.env, timeout=120)
        name = run(_with_override(stack, override, "ps", "-aq", "app"), env=stack.env).stdout.split()[0]
        run(["docker", "wait", name], timeout=300)
        steps = {"montero logs app --since 10m": stack.montero_cmd("logs", "app", "--since", "10m"),
                 "docker compose logs app --since 10m": stack.compose_cmd("logs", "app", "--since", "10m")}
        # A candidate fix can be measured side by side (a script taking montero's arguments).
        if os.environ.get("MONTERO_BENCH_LOGS_CANDIDATE"):
            steps["candidate fix: bench/candidates/logs_fast.py"] = [
                montero_python(), os.environ["MONTERO_BENCH_LOGS_CANDIDATE"],
                *stack.montero_cmd("logs", "app", "--since", "10m")[1:]]
        # 1/10 of the log first: peak memory there vs at full size shows whether it grows.
        small_count = _count_lines(stack)
        small = alternate(steps, Settings(runs=3, warmup=1), env=stack.env, memory=True, timeout=300)
        started = time.monotonic()
        for _ in range(9):
            run(["docker", "start", "-a", name], capture=True, timeout=300)
        log(f"fig10: {lines - chunk:,} more lines written in {time.monotonic() - started:.0f}s")
        count = _count_lines(stack)
        if count < lines * 0.99:
            raise BenchError(f"only {count:,} of {lines:,} log lines are visible to `docker compose logs`")
        full = alternate(steps, Settings(runs=settings.runs, warmup=1), env=stack.env, memory=True, timeout=600)
        count_after = _count_lines(stack)
        a, b = "montero logs app --since 10m", "docker compose logs app --since 10m"
        r = ratio(full[a], full[b])
        fig.header = ["command", f"median wall ({chunk:,} lines)", f"median wall ({lines:,})",
                      f"peak RSS ({chunk:,})", f"peak RSS ({lines:,})", "ratio (wall, full log)"]
        for n in steps:
            fig.rows.append([f"`{n}`", fmt_s(small[n].median), fmt_s(full[n].median),
                             f"{small[n].peak_median_mib:.0f} MiB", f"{full[n].peak_median_mib:.0f} MiB",
                             fmt_ratio(ratio(full[n], full[b]))])
        growth = full[a].peak_median_mib - small[a].peak_median_mib
        flat = growth <= max(20.0, 0.2 * small[a].peak_median_mib)
        fig.verdict = verdict(r <= 1.1 and flat)
        fig.summary = (f"{fmt_s(full[a].median)} vs {fmt_s(full[b].median)} (ratio {fmt_ratio(r)}); "
                       f"peak {full[a].peak_median_mib:.0f} MiB at {lines:,} lines vs "
                       f"{small[a].peak_median_mib:.0f} MiB at {chunk:,}")
        fig.runs = settings.runs
        fig.notes += [
            f"lines printed by `docker compose logs app --since 10m`: {small_count:,} (small), {count:,} / "
            f"{count_after:,} (full, before / after the runs); output goes to /dev/null",
            "peak RSS is GNU time's maximum resident set over the command's process tree (for montero: the "
            "largest of the Python process and the `docker compose` it runs)",
            "the log is written by the project's own `app` service, started with a compose override whose "
            "command prints the lines (json-file driver), restarted nine times to append the other tenths",
        ]
        return fig
    finally:
        stack.close(remove_images=False)


def _with_override(stack: Stack, override: Path, *args: str) -> list[str]:
    cmd = stack.compose_cmd()
    at = cmd.index("-f") + 2
    return cmd[:at] + ["-f", str(override)] + cmd[at:] + list(args)


def _count_lines(stack: Stack) -> int:
    proc = subprocess.run(stack.compose_cmd("logs", "app", "--since", "10m", "--no-log-prefix"), env=stack.env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=600)
    return proc.stdout.count(b"\n")
