"""Figures of round two (issue 20): `montero doctor`, `montero stats --once`, and what the health probes cost.

Same method as the other figures: a warm-up, then the commands alternating, medians of at
least 5 runs; absolute targets are compared with the median.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from bench.lib import BenchError, Sample, Settings, alternate, fmt_ratio, fmt_s, ratio, run
from bench.report import Figure, verdict
from bench.stack import Stack

# A unix socket nobody listens on: every check that needs the Engine meets "Docker is down"
# (the socket file missing is what a stopped dockerd leaves), without stopping the shared daemon.
NO_DOCKER = "unix:///nonexistent/montero-bench-docker.sock"


def _accepting(cmd: list[str], env: dict[str, str], codes: tuple[int, ...] = (0, 1)) -> Callable[[], None]:
    """A step that may exit with a finding's code (doctor exits 1 when a check fails)."""
    def step() -> None:
        proc = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=120)
        if proc.returncode not in codes:
            tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
            raise BenchError(f"`{' '.join(cmd)}` exited {proc.returncode}: {tail}")
    return step


def _summary_line(cmd: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in proc.stdout.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else f"exit {proc.returncode}"


def fig11_running(stack: Stack, settings: Settings) -> Sample:
    """`montero doctor` on the running, healthy stack (every check)."""
    runs = Settings(runs=max(settings.runs, 7), warmup=1)
    cmd = stack.montero_cmd("doctor")
    return alternate({"doctor": _accepting(cmd, stack.env)}, runs)["doctor"]


def fig11(stack: Stack, healthy: Sample, healthy_line: str, settings: Settings) -> Figure:
    """Docker down: the stack is stopped first (no docker-proxy holds its ports), DOCKER_HOST names no socket."""
    fig = Figure(11, "`montero doctor` wall time: healthy stack, and with Docker down",
                 "< 2 s on a healthy stack; < 1 s with Docker down")
    env = {**stack.env, "DOCKER_HOST": NO_DOCKER}
    cmd = stack.montero_cmd("doctor")
    runs = Settings(runs=max(settings.runs, 7), warmup=1)
    down = alternate({"doctor": _accepting(cmd, env)}, runs)["doctor"]
    down_line = _summary_line(cmd, env)
    fig.header = ["case", "median", "min", "max", "doctor's own summary", "target"]
    fig.rows = [
        ["healthy stack (app + redis running)", fmt_s(healthy.median), fmt_s(min(healthy.seconds)),
         fmt_s(max(healthy.seconds)), healthy_line, "< 2 s"],
        ["Docker down (`DOCKER_HOST` names no socket)", fmt_s(down.median), fmt_s(min(down.seconds)),
         fmt_s(max(down.seconds)), down_line, "< 1 s"],
    ]
    fig.verdict = verdict(healthy.median < 2.0 and down.median < 1.0)
    fig.summary = f"healthy {fmt_s(healthy.median)} (< 2 s), Docker down {fmt_s(down.median)} (< 1 s)"
    fig.runs = runs.runs
    fig.notes.append("the checks run concurrently in threads, each bounded by `--timeout` (8 s): with Docker "
                     "down every check that needs it is skipped after the one failed ping")
    return fig


def stats_figure(stack: Stack, settings: Settings) -> Figure:
    """`montero stats --once --json` against `docker stats --no-stream` of the same containers."""
    ids = stack.container_ids()
    if not ids:
        raise BenchError("the stack has no containers")
    steps = {
        "montero stats --once --json": stack.montero_cmd("stats", "--once", "--json"),
        "docker stats --no-stream <ids>": ["docker", "stats", "--no-stream", *ids],
    }
    runs = Settings(runs=max(settings.runs, 5), warmup=1)
    samples = alternate(steps, runs, env=stack.env)
    a, b = samples["montero stats --once --json"], samples["docker stats --no-stream <ids>"]
    fig = Figure(16, "`montero stats --once` wall time", "(no target set; compared with `docker stats --no-stream`)")
    fig.header = ["command", "median", "min", "max", "ratio"]
    fig.rows = [[f"`{n}`", fmt_s(s.median), fmt_s(min(s.seconds)), fmt_s(max(s.seconds)), fmt_ratio(ratio(s, b))]
                for n, s in samples.items()]
    fig.verdict = "n/a"
    fig.summary = f"{fmt_s(a.median)} vs `docker stats --no-stream` {fmt_s(b.median)} (ratio {fmt_ratio(ratio(a, b))})"
    fig.runs = runs.runs
    fig.notes.append(f"{len(ids)} containers (app, redis); montero also scrapes each replica's /metrics twice "
                     "(requests/s needs two samples) and reads Redis INFO, which `docker stats` does not")
    return fig


# --- what one health probe costs --------------------------------------------------------------

def _ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def _proc_cpu(pid: int, children: bool) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / _ticks()


def _cgroup_cpu(container_id: str) -> float:
    for path in (f"/sys/fs/cgroup/cpuacct/docker/{container_id}/cpuacct.usage",
                 f"/sys/fs/cgroup/system.slice/docker-{container_id}.scope/cpu.stat"):
        p = Path(path)
        if p.is_file():
            text = p.read_text()
            if path.endswith("cpu.stat"):
                return int(text.split("usage_usec")[1].split()[0]) / 1e6
            return int(text) / 1e9
    raise BenchError(f"no CPU accounting for container {container_id[:12]} (cgroup layout not known)")


def _pids(name: str) -> list[int]:
    proc = subprocess.run(["pidof", name], capture_output=True, text=True, check=False)
    return [int(p) for p in proc.stdout.split()]


def probe_cost(container: str, probes: dict[str, list[str]], rounds: int = 5, per_round: int = 10) -> dict[str, dict[str, float]]:
    """CPU seconds per probe, by where it is spent, for each probe command run by `docker exec`
    (the path Docker's healthcheck takes: dockerd → containerd → shim → runc exec), alternating.

    - in the container: the probe process, runc's init in the container's cgroup, and the
      app's work answering the request (cgroup cpuacct);
    - shim + runc: the container's containerd-shim and the runc it forks (their CPU, children included);
    - dockerd + containerd: the daemons' CPU over the same window, shared with everything else on the
      engine, so an upper bound on a busy machine.
    """
    info = run(["docker", "inspect", "--format", "{{.Id}} {{.State.Pid}}", container]).stdout.split()
    full, pid = info[0], int(info[1])
    shim = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    daemons = _pids("dockerd") + _pids("containerd")
    per: dict[str, dict[str, list[float]]] = {n: {"container": [], "shim": [], "daemons": [], "wall": []} for n in probes}
    for r in range(rounds + 1):  # round 0 is the warm-up
        for name, cmd in probes.items():
            c0, s0 = _cgroup_cpu(full), _proc_cpu(shim, True)
            d0 = sum(_proc_cpu(p, False) for p in daemons)
            t0 = time.perf_counter()
            for _ in range(per_round):
                subprocess.run(["docker", "exec", full, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               check=True, timeout=30)
            wall = time.perf_counter() - t0
            if r == 0:
                continue
            per[name]["container"].append((_cgroup_cpu(full) - c0) / per_round)
            per[name]["shim"].append((_proc_cpu(shim, True) - s0) / per_round)
            per[name]["daemons"].append((sum(_proc_cpu(p, False) for p in daemons) - d0) / per_round)
            per[name]["wall"].append(wall / per_round)
    return {n: {k: statistics.median(v) for k, v in parts.items()} for n, parts in per.items()}


def probe_share(cost: dict[str, float], replicas: int, interval_s: float) -> tuple[float, float]:
    """% of one core: (in the container only, everything including Docker's exec machinery)."""
    inside = cost["container"] * replicas / interval_s * 100
    total = (cost["container"] + cost["shim"] + cost["daemons"]) * replicas / interval_s * 100
    return inside, total


# The probe the app had before round two, measured beside the configured one.
PYTHON_PROBE = ["python", "-c",
                "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/health', timeout=4)"]


def _seconds(value: object) -> float:
    text = str(value or "0s")
    total, number = 0.0, ""
    for ch in text:
        if ch.isdigit() or ch == ".":
            number += ch
            continue
        factor = {"h": 3600, "m": 60, "s": 1}.get(ch, 0)
        total += float(number or 0) * factor
        number = ""
    return total + (float(number) if number else 0)


def healthcheck(stack: Stack, service: str = "app") -> tuple[list[str], float]:
    """The service's probe as an argv for `docker exec`, and its interval in seconds."""
    check = stack.config()["services"][service]["healthcheck"]
    test = [str(t).replace("$$", "$") for t in check["test"]]
    argv = test[1:] if test[0] == "CMD" else ["/bin/sh", "-c", test[1]]
    return argv, _seconds(check.get("interval", "30s"))


def fig4(settings: Settings) -> Figure:
    """From built images until healthy (`montero up` vs `docker compose up -d --wait`); what the probes cost."""
    stack = Stack("up")
    try:
        fig = Figure(4, "`montero up` from built images until every service is healthy; CPU of the health probes",
                     "healthy within 6 s of `montero up`, ratio ≤ 1.0 vs `docker compose up -d --wait`; "
                     "health probes at 3 replicas < 2 % of one core")
        stack.prepare_redis_volume()
        runs = Settings(runs=settings.runs, warmup=1)
        a, b = "montero up", "docker compose up -d --wait"
        samples = alternate({a: stack.montero_cmd("up"), b: stack.compose_cmd("up", "-d", "--wait")},
                            runs, env=stack.env, between=stack.stop, timeout=300)
        r = ratio(samples[a], samples[b])
        # The probes, on one replica of the running stack (left up by the last `compose up`).
        stack.compose("up", "-d", "--wait", timeout=300)
        app = stack.compose("ps", "-q", "app").split()[0]
        probe, interval = healthcheck(stack)
        probes = {"configured probe": probe, "previous probe (python urllib)": PYTHON_PROBE,
                  "`true` (the exec alone)": ["true"]}
        cost = probe_cost(app, probes, rounds=max(settings.runs, 5))
        share_in, share_all = probe_share(cost["configured probe"], 3, interval)
        fig.header = ["command", "median", "min", "max", "ratio"]
        fig.rows = [[f"`{n}`", fmt_s(s.median), fmt_s(min(s.seconds)), fmt_s(max(s.seconds)),
                     fmt_ratio(ratio(s, samples[b]))] for n, s in samples.items()]
        probe_rows = ["| probe (`docker exec`, as the healthcheck runs it) | in the container | shim + runc | "
                      "dockerd + containerd | wall |", "|---|---|---|---|---|"]
        for name, c in cost.items():
            probe_rows.append(f"| {name} | {c['container'] * 1000:.1f} ms | {c['shim'] * 1000:.1f} ms | "
                              f"{c['daemons'] * 1000:.1f} ms | {c['wall'] * 1000:.0f} ms |")
        old_in, old_all = probe_share(cost["previous probe (python urllib)"], 3, 5.0)
        fig.extra_markdown = (
            "CPU per probe (medians of {n} rounds of 10 `docker exec`, alternating):\n\n".format(n=max(settings.runs, 5))
            + "\n".join(probe_rows) + "\n\n"
            f"At 3 replicas and the configured interval ({interval:g} s) the probes cost **{share_in:.1f} %** of one "
            f"core inside the containers, {share_all:.1f} % with Docker's exec machinery (shim, runc, daemons) "
            f"counted; the previous python probe at 5 s cost {old_in:.1f} % / {old_all:.1f} %. Configured probe: "
            f"`{' '.join(probe)}`."
        )
        healthy_in = samples[a].median
        fig.verdict = verdict(healthy_in <= 6.0 and r <= 1.0 and share_in < 2.0)
        fig.summary = (f"{fmt_s(samples[a].median)} vs {fmt_s(samples[b].median)} (ratio {fmt_ratio(r)}); "
                       f"probes at 3 replicas {share_in:.1f} % of a core ({share_all:.1f} % with Docker's exec)")
        fig.runs = runs.runs
        fig.notes.append("containers are removed (volumes kept) before each start; both commands return when "
                         "every service's Docker healthcheck says healthy")
        return fig
    finally:
        stack.close(remove_images=False)
