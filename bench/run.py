"""Measure the ten figures of docs/benchmarks.md on this machine and rewrite that document.

    python bench/run.py [--only N,M] [--quick]

Each figure is a median of at least 5 runs after a warm-up; every comparison alternates
its commands in the same run. Stacks are temp copies of the project with their own compose
project names and free loopback ports; everything started is removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report
from bench.figures_build import fig5, fig6
from bench.figures_cli import fig1, fig2, fig3, fig10
from bench.figures_ops import fig4, fig11, fig11_running, stats_figure
from bench.figures_http import fig7, fig8
from bench.lib import BenchError, Sample, Settings, ensure_tools, log, run
from bench.report import Figure, verdict
from bench.stack import APP_IMAGE, REPO, Stack

NEEDS_IMAGE = {2, 3, 4, 6, 7, 8, 10, 11, 17}
NEEDS_RUNNING = {2, 3, 7, 8, 11, 17}
FIGURES = report.RUN_FIGURES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="", help="comma-separated figure numbers (default: all of FIGURES)")
    parser.add_argument("--quick", action="store_true", help="3 runs instead of 5, shorter load tests (smoke run)")
    parser.add_argument("--no-doc", action="store_true", help="print results, do not touch docs/benchmarks.md")
    parser.add_argument("--doc-only", action="store_true",
                        help="measure nothing: rewrite docs/benchmarks.md from bench/results.json")
    args = parser.parse_args(argv)
    try:
        args.figures = sorted({int(n) for n in args.only.split(",") if n.strip()}) or list(FIGURES)
    except ValueError:
        parser.error("--only takes figure numbers, e.g. --only 1,7")
    if any(n not in FIGURES for n in args.figures):
        parser.error(f"bench/run.py measures figures {', '.join(map(str, FIGURES))}; the others have their own "
                     "scripts (bench/sections/)")
    return args


def fig9(settings: Settings) -> Figure:
    """The backups helper's script (bench/bench_backup.py) measures; its markdown table is included."""
    fig = Figure(9, "`montero backup sqlite` of a ~1 GB database, idle and under writes; `montero restore`",
                 "ratio ≤ 1.0 vs `sqlite3 .backup` + `PRAGMA integrity_check` + `sha256sum` (like with like)")
    script = REPO / "bench" / "bench_backup.py"
    if not script.is_file():
        raise BenchError("bench/bench_backup.py (the backups benchmark) is not there yet")
    bound = 30
    medians = Path(f"/tmp/montero-bench-backup-{os.getpid()}.json")
    # Its own scratch folder: the script empties --workdir first, and another run may be using the default.
    cmd = [sys.executable, str(script), "--runs", str(max(5, settings.runs)),
           "--workdir", f"/tmp/montero-bench-backup-{os.getpid()}", "--json", str(medians),
           # sqlite3 .backup restarts whenever another connection writes: bound each run.
           "--timeout", str(bound)]
    if settings.quick:
        cmd += ["--size-mb", "256"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=5400, cwd=REPO)
        if proc.returncode != 0:
            tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-4:])
            raise BenchError(f"bench/bench_backup.py exited {proc.returncode}: {tail}")
        data = json.loads(medians.read_text())
    finally:
        medians.unlink(missing_ok=True)
    # Its own heading becomes a paragraph under ours; its table and notes are kept as printed.
    fig.extra_markdown = "\n".join(ln.lstrip("# ") if ln.startswith("###") else ln
                                    for ln in proc.stdout.strip().splitlines())
    fig.summary, fig.verdict = summarize_backup(data)
    fig.runs = max(5, settings.runs)
    fig.notes.append(f"measured by bench/bench_backup.py (see its docstring for the method), each command under "
                     f"writes bounded at {bound} s: `sqlite3 .backup` restarts whenever another connection writes")
    return fig


def summarize_backup(data: dict[str, Any]) -> tuple[str, str]:
    """Summary and verdict from bench_backup.py's medians: montero against the careful chain, idle and busy."""
    idle, busy = data["idle"], data["busy"]
    r_idle = idle["montero"] / idle["careful"]
    text = (f"idle: {idle['montero']:.2f} s vs {idle['careful']:.2f} s verified by hand (ratio {r_idle:.2f}; "
            f"{idle['montero'] / idle['plain']:.2f} vs the copy alone, {idle['plain']:.2f} s)")
    ok = r_idle <= 1.0
    if busy.get("careful"):
        r_busy = busy["montero"] / busy["careful"]
        text += f"; under writes: {busy['montero']:.2f} s vs {busy['careful']:.2f} s (ratio {r_busy:.2f})"
        ok = ok and r_busy <= 1.0
    else:
        text += (f"; under writes: montero {busy['montero']:.2f} s, the sqlite3 chain did not finish within "
                 f"{data['bound_s']:.0f} s")
    return text, verdict(ok)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(runs=3 if args.quick else 5, warmup=1, quick=args.quick)
    if args.doc_only:
        saved = json.loads(report.RESULTS.read_text()) if report.RESULTS.is_file() else {}
        report.write_doc(report.load(), saved.get("machine") or report.machine(), {}, _previous_minutes(30))
        return 0
    started = time.monotonic()
    for note in ensure_tools():
        log(note)
    info = report.machine()
    log(f"machine: {report.machine_line(info)}; figures {args.figures}{' (quick)' if args.quick else ''}")
    results: dict[int, Figure] = {}
    skipped: dict[int, str] = {}

    def attempt(number: int, func: Callable[[], Figure]) -> None:
        if number not in args.figures:
            return
        log(f"figure {number} …")
        t0 = time.monotonic()
        load = os.getloadavg()[0]
        try:
            results[number] = report.stamp(func(), info, settings.runs)
            results[number].notes.append(f"load average (1 min) at the start / end of this figure: {load:.2f} / "
                                         f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
            log(f"figure {number}: {results[number].summary} [{results[number].verdict}] "
                f"({time.monotonic() - t0:.0f}s)")
            if not args.no_doc:  # an interrupted run keeps every figure it finished
                publish({number: results[number]}, {}, info, args, started)
        except (BenchError, subprocess.SubprocessError, OSError, ValueError, KeyError) as exc:
            skipped[number] = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
            log(f"figure {number} not measured: {skipped[number]}")
            if os.environ.get("MONTERO_BENCH_DEBUG"):
                traceback.print_exc()

    attempt(1, lambda: fig1(settings))
    main_stack: Stack | None = None
    doctor_healthy: tuple[Sample, str] | None = None
    try:
        if NEEDS_IMAGE & set(args.figures):
            main_stack = Stack("main")
            log(f"building the app image {APP_IMAGE} in {main_stack.root}")
            try:
                main_stack.build("app")
            except BenchError as exc:
                for n in NEEDS_IMAGE & set(args.figures):
                    skipped[n] = f"the app image does not build: {exc}"
                main_stack = None
        if main_stack and NEEDS_RUNNING & set(args.figures):
            try:
                main_stack.up()
            except BenchError as exc:
                for n in NEEDS_RUNNING & set(args.figures):
                    skipped[n] = f"the stack does not come up healthy: {exc}"
            else:
                attempt(2, lambda: fig2(main_stack, settings))  # type: ignore[arg-type]
                attempt(3, lambda: fig3(main_stack, settings))  # type: ignore[arg-type]
                attempt(8, lambda: fig8(main_stack, settings))  # type: ignore[arg-type]
                attempt(7, lambda: fig7(main_stack, settings))  # type: ignore[arg-type]
                attempt(17, lambda: stats_figure(main_stack, settings))  # type: ignore[arg-type]
                if 11 in args.figures:
                    try:
                        doctor_healthy = (fig11_running(main_stack, settings), _doctor_line(main_stack))
                    except BenchError as exc:
                        skipped[11] = str(exc)[:300]
            main_stack.down()
            # Docker down: measured with the stack stopped, so no docker-proxy holds its ports.
            if doctor_healthy:
                attempt(11, lambda: fig11(main_stack, *doctor_healthy, settings))  # type: ignore[arg-type, misc]
        if main_stack:
            attempt(6, lambda: fig6(main_stack, settings))  # type: ignore[arg-type]
            attempt(10, lambda: fig10(settings, lines=200_000 if settings.quick else 1_000_000))
            attempt(4, lambda: fig4(settings))
        attempt(5, lambda: fig5(settings))
        attempt(9, lambda: fig9(settings))
    finally:
        if main_stack:
            main_stack.close(remove_images=True)
        run(["docker", "image", "rm", "-f", APP_IMAGE], check=False)

    for number, fig in sorted(results.items()):
        print(f"{number:2}. {fig.title}: {fig.summary} [{fig.verdict}]")
    for number, reason in sorted(skipped.items()):
        print(f"{number:2}. not measured: {reason}")
    if not args.no_doc:
        publish(results, skipped, info, args, started)
        log(f"wrote {report.DOC.relative_to(REPO)} and {report.RESULTS.relative_to(REPO)}")
    return 0 if not skipped else 1


def _doctor_line(stack: Stack) -> str:
    from bench.figures_ops import _summary_line

    return _summary_line(stack.montero_cmd("doctor"), stack.env)


def publish(results: dict[int, Figure], skipped: dict[int, str], info: dict[str, str],
            args: argparse.Namespace, started: float) -> None:
    """Merge into bench/results.json and rewrite docs/benchmarks.md."""
    merged = report.load()
    merged.update(results)
    for number in skipped:  # a figure that failed now is not shown with stale figures
        merged.pop(number, None)
    report.save(merged, info)
    minutes = max(1, round((time.monotonic() - started) / 60))
    full_run = args.figures == list(FIGURES) and not args.quick
    report.write_doc(merged, info, skipped, minutes if full_run else _previous_minutes(minutes))


def _previous_minutes(fallback: int) -> int:
    import re

    if report.DOC.is_file():
        match = re.search(r"about (\d+) minutes", report.DOC.read_text())
        if match:
            return int(match.group(1))
    return max(fallback, 30)


if __name__ == "__main__":
    sys.exit(main())
