"""Timing helpers shared by every figure: alternating A/B runs, medians, ratios, peak memory.

Every comparison is measured in the same run with the two commands alternating
(A B A B …) after a warm-up, so drift of the machine (page cache, CPU frequency,
other tenants) hits both sides alike. Every loop here is bounded in count and time.
"""

from __future__ import annotations

import os
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Cmd = Sequence[str]
# One command of a comparison: its argv, or a callable doing the work (returns nothing).
Step = Cmd | Callable[[], None]

DEFAULT_TIMEOUT = 600.0


class BenchError(RuntimeError):
    """A measured command failed: the figure is reported as not measured, with this reason."""


@dataclass
class Sample:
    seconds: list[float] = field(default_factory=list)
    peak_kib: list[int] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def peak_median_mib(self) -> float:
        return statistics.median(self.peak_kib) / 1024 if self.peak_kib else float("nan")


@dataclass
class Settings:
    runs: int = 5
    warmup: int = 1
    quick: bool = False


def env_with(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra or {})
    return env


def run(cmd: Cmd, env: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT, cwd: str | None = None,
        check: bool = True, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a setup command (not measured). Raises BenchError with its stderr tail on failure."""
    try:
        proc = subprocess.run(list(cmd), env=env, cwd=cwd, timeout=timeout, text=True,
                              stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                              stderr=subprocess.PIPE)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(cmd)}") from exc
    if check and proc.returncode != 0:
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-5:]
        raise BenchError(f"`{' '.join(cmd)}` exited {proc.returncode}: {' | '.join(tail)}")
    return proc


def timed(step: Step, env: dict[str, str] | None = None, timeout: float = DEFAULT_TIMEOUT,
          memory: bool = False) -> tuple[float, int]:
    """Wall time of one step, and (memory=True) the peak RSS in KiB of its process tree.

    Peak memory comes from GNU time (`/usr/bin/time -f %M`): wait4's rusage of the
    child, which covers its waited-for descendants too (montero's docker subprocess).
    """
    if callable(step):
        start = time.perf_counter()
        step()
        return time.perf_counter() - start, 0
    cmd = list(step)
    if memory:
        cmd = ["/usr/bin/time", "-f", "%M", *cmd]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=env, timeout=timeout, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"timed out after {timeout:.0f}s: {' '.join(step)}") from exc
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-4:]
        raise BenchError(f"`{' '.join(step)}` exited {proc.returncode}: {' | '.join(tail)}")
    peak = 0
    if memory:
        last = proc.stderr.strip().splitlines()[-1]
        peak = int(last.strip())
    return elapsed, peak


def alternate(steps: dict[str, Step], settings: Settings, env: dict[str, str] | None = None,
              between: Callable[[], None] | None = None, memory: bool = False,
              timeout: float = DEFAULT_TIMEOUT) -> dict[str, Sample]:
    """Warm up, then run every step in turn (A B C A B C …) `settings.runs` times.

    `between` runs (unmeasured) before each measured step, e.g. `compose down`.
    """
    samples = {name: Sample() for name in steps}
    for _ in range(settings.warmup):
        for step in steps.values():
            if between:
                between()
            timed(step, env, timeout, memory)
    for _ in range(settings.runs):
        for name, step in steps.items():
            if between:
                between()
            seconds, peak = timed(step, env, timeout, memory)
            samples[name].seconds.append(seconds)
            if memory:
                samples[name].peak_kib.append(peak)
    return samples


def ratio(a: Sample, b: Sample) -> float:
    return a.median / b.median if b.median else float("nan")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, expect: Callable[[int], bool] = lambda s: s < 500) -> None:
    """Poll a loopback URL until it answers (bounded)."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if expect(resp.status):
                    return
        except urllib.error.HTTPError as exc:
            if expect(exc.code):
                return
            last = str(exc)
        except OSError as exc:
            last = str(exc)
        time.sleep(0.3)
    raise BenchError(f"{url} did not answer within {timeout:.0f}s ({last})")


def ensure_tools(quiet: bool = False) -> list[str]:
    """Install the load generator and GNU time from Debian when missing (fresh machines)."""
    wanted = {"wrk": "wrk", "/usr/bin/time": "time", "sqlite3": "sqlite3"}
    missing = [pkg for binary, pkg in wanted.items() if shutil.which(binary) is None]
    notes = []
    if missing and shutil.which("apt-get") and os.geteuid() == 0:
        env = env_with({"DEBIAN_FRONTEND": "noninteractive"})
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False, timeout=300,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], env=env, check=False, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for binary in wanted:
        if shutil.which(binary) is None:
            notes.append(f"{binary} is missing and could not be installed")
    return notes


def fmt_s(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(value: float) -> str:
    return f"{value:.2f}"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)
