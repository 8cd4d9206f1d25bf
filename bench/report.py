"""Results of the figures, and docs/benchmarks.md written from them.

Results are kept in bench/results.json (merged by figure number), so `--only 7`
refreshes one figure without losing the others; each figure records when and on
which machine it was measured.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results.json"
# Hand-written analysis of the misses (causes, fixes, before/after), appended to the document.
FINDINGS = REPO / "bench" / "FINDINGS.md"
DOC = REPO / "docs" / "benchmarks.md"


@dataclass
class Figure:
    number: int
    title: str
    target: str
    summary: str = ""  # the measured value(s) in one line, for the overview table
    verdict: str = "not measured"  # met | missed | not measured | n/a
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra_markdown: str = ""
    measured_at: str = ""
    machine: str = ""
    runs: int = 0
    # Measured outside bench/run.py (an e2e test, its own script): the body is bench/sections/<section>,
    # kept as written; results.json holds its summary row. Empty for figures bench/run.py measures.
    section: str = ""

    def table(self) -> str:
        if not self.header:
            return ""
        lines = ["| " + " | ".join(self.header) + " |", "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)


def _out(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict[str, str]:
    cpu = ""
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        cpu = match.group(1).strip() if match else platform.processor()
    except OSError:
        cpu = platform.processor()
    mem = ""
    try:
        kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        pass
    os_name = ""
    try:
        os_name = re.search(r'PRETTY_NAME="(.+)"', Path("/etc/os-release").read_text()).group(1)  # type: ignore[union-attr]
    except (OSError, AttributeError):
        pass
    docker_server = _out(["docker", "version", "--format", "{{.Server.Version}}"])
    storage = _out(["docker", "info", "--format", "{{.Driver}}, cgroup v{{.CgroupVersion}}"])
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "memory": mem,
        "OS": os_name,
        "kernel": platform.release(),
        "Python": platform.python_version(),
        "Docker": f"client {_out(['docker', 'version', '--format', '{{.Client.Version}}'])}, "
                  f"server {docker_server} ({storage})",
        "Compose": _out(["docker", "compose", "version", "--short"]),
        "wrk": _out(["sh", "-c", "wrk -v 2>&1 | head -1"]).split(" [")[0],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def machine_line(info: dict[str, str]) -> str:
    return f"{info['CPU']}, {info['cores']} cores, {info['memory']}, kernel {info['kernel']}"


def load() -> dict[int, Figure]:
    if not RESULTS.is_file():
        return {}
    data = json.loads(RESULTS.read_text())
    return {int(k): Figure(**v) for k, v in data.get("figures", {}).items()}


def save(figures: dict[int, Figure], info: dict[str, str]) -> None:
    data = {"machine": info, "figures": {str(k): asdict(v) for k, v in sorted(figures.items())}}
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


INTRO = """# Benchmarks

The numbers that matter to users of `montero` and of the stack it runs, measured side by
side with the plain Docker commands they replace. These are benchmarks, not tests: nothing
in the test suite fails on a time.

## How to run

```sh
python bench/run.py              # every figure (about {minutes} minutes on the machine below)
python bench/run.py --only 1,7   # some figures; the others keep their last results
python bench/run.py --quick      # 3 runs instead of 5 and shorter load tests (a smoke run)
```

It needs root (or the docker group), a running Docker Engine with the Compose v2 plugin,
and `montero` installed (`pip install -e .`). It installs `wrk`, GNU `time` and `sqlite3`
from Debian when they are missing. Every stack it starts is a temp copy of the project with
its own compose project name (`montero-bench-*`) and free loopback ports, and is removed at
the end; the images use `montero-base:bookworm` when it exists (no registry needed).

Method: each figure is the median of at least 5 runs after a warm-up; every comparison is
a ratio of medians measured in the same run with the commands alternating (A B A B …).
Results are also kept, machine-readable, in `bench/results.json`.
"""


SECTIONS = FINDINGS.parent / "sections"
# The figures bench/run.py measures itself; the others come from bench/sections/ (see Figure.section).
RUN_FIGURES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 17)
# Every figure issue 20 asks for (20: offsite push and drill, issue 15): the summary lists a missing one
# as not measured.
EXPECTED = (*RUN_FIGURES, 12, 13, 14, 15, 16, 19, 20)


def write_doc(figures: dict[int, Figure], info: dict[str, str], skipped: dict[int, str], minutes: int) -> None:
    """Summary table first, then one section per figure in number order, then FINDINGS, then any
    section file no figure names (kept as written, in file-name order)."""
    parts = [INTRO.format(minutes=minutes), "## Machine\n", "| | |", "|---|---|"]
    parts += [f"| {k} | {v} |" for k, v in info.items()]
    parts += ["", "## Summary\n", "| # | figure | measured | target | met? |", "|---|---|---|---|---|"]
    for number in sorted(set(figures) | set(EXPECTED) | set(skipped)):
        fig = figures.get(number)
        if fig is None:
            reason = skipped.get(number, "not run yet")
            parts.append(f"| {number} | | not measured: {reason} | | – |")
            continue
        mark = {"met": "yes", "missed": "**no**"}.get(fig.verdict, fig.verdict)
        parts.append(f"| {number} | {fig.title} | {fig.summary} | {fig.target} | {mark} |")
    parts.append("")
    used: set[str] = set()
    for number in sorted(figures):
        fig = figures[number]
        if fig.section:
            path = SECTIONS / fig.section
            used.add(path.name)
            body = path.read_text().strip() if path.is_file() else f"## {number}. {fig.title}\n\n(missing {path.name})"
            parts += [body, ""]
            continue
        parts.append(f"## {number}. {fig.title}\n")
        parts.append(f"Target: {fig.target}. Measured {fig.measured_at}"
                     + (f", {fig.runs} run{'s' if fig.runs != 1 else ''} per command" if fig.runs else "")
                     + (f" on {fig.machine}" if fig.machine and fig.machine != machine_line(info) else "") + ".\n")
        if fig.table():
            parts.append(fig.table() + "\n")
        if fig.extra_markdown:
            parts.append(fig.extra_markdown.strip() + "\n")
        for note in fig.notes:
            parts.append(f"- {note}")
        if fig.notes:
            parts.append("")
    if FINDINGS.is_file():
        parts += ["", FINDINGS.read_text().strip()]
    # Figures measured by their own scripts (e.g. bench/acme_bench.py), kept as written. Files are
    # named `<figure number>-<what>.md`; give a new one its summary row in bench/results.json
    # (a figure with "section": "<file name>"), or it is appended here, after FINDINGS, unnumbered.
    # Write a new figure there, never into docs/benchmarks.md: that file is regenerated.
    for section in sorted(SECTIONS.glob("*.md")):
        if section.name not in used:
            parts += ["", section.read_text().strip()]
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(parts).rstrip() + "\n")


def record(fig: Figure, info: dict[str, str] | None = None) -> None:
    """Merge one figure into bench/results.json and rewrite docs/benchmarks.md (for the figures' own scripts)."""
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    figures = load()
    figures[fig.number] = fig
    info = info or saved.get("machine") or machine()
    save(figures, info)
    minutes = 30
    if DOC.is_file():
        found = re.search(r"about (\d+) minutes", DOC.read_text())
        minutes = int(found.group(1)) if found else minutes
    write_doc(figures, info, {}, minutes)


def stamp(fig: Figure, info: dict[str, str], runs: int) -> Figure:
    fig.measured_at = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    fig.machine = machine_line(info)
    fig.runs = fig.runs or runs
    return fig


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def as_dict(fig: Figure) -> dict[str, Any]:
    return asdict(fig)
