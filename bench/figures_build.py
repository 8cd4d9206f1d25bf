"""Figures 5 and 6: rebuild times and image size, in a temp copy of the project."""

from __future__ import annotations

import json
import os
import statistics
import time

from bench.lib import Settings, fmt_ratio, fmt_s, log, run, timed
from bench.report import Figure, verdict
from bench.stack import REPO, Stack

MiB = 1024 * 1024
# Build caches are content-addressed: every run's edits must be new text, or an earlier
# run's layers are reused and a "requirements change" costs nothing.
TOKEN = f"{os.getpid()}-{time.time_ns()}"


def _touch_code(stack: Stack, round_no: int) -> None:
    """A one-line change in the app's code: invalidates only the `COPY backend/` layer."""
    target = stack.root / "backend" / "wsgi.py"
    if not target.is_file():
        target = next((stack.root / "backend").rglob("*.py"))
    with target.open("a") as handle:
        handle.write(f"# bench change {TOKEN}-{round_no}\n")


def _touch_requirements(stack: Stack, round_no: int) -> None:
    """A requirements change (a comment is enough: the file's checksum moves the pip layer)."""
    with (stack.root / "backend" / "requirements.txt").open("a") as handle:
        handle.write(f"# bench change {TOKEN}-{round_no}\n")


def fig5(settings: Settings) -> Figure:
    """Code-only, requirements and --no-cache builds, alternating, each after a warm build."""
    stack = Stack("build", app_image=f"montero-bench-rebuild:{os.getpid()}")
    fig = Figure(5, "rebuild after a one-line code change / a requirements change / from scratch",
                 "code-only rebuild ≤ 15% of a cold build")
    try:
        build = stack.compose_cmd("build", "app")
        stack._built_images.add(stack.vars["MONTERO_APP_IMAGE"])
        cold = stack.compose_cmd("build", "--no-cache", "app")
        log("fig5: warm-up build")
        timed(build, stack.env, timeout=1800)
        kinds = {"code change": [], "requirements change": [], "from scratch (--no-cache)": []}
        runs = max(3, settings.runs) if not settings.quick else 3
        for i in range(runs):
            _touch_code(stack, i)
            kinds["code change"].append(timed(build, stack.env, timeout=900)[0])
            _touch_requirements(stack, i)
            kinds["requirements change"].append(timed(build, stack.env, timeout=1800)[0])
            kinds["from scratch (--no-cache)"].append(timed(cold, stack.env, timeout=1800)[0])
            log(f"fig5: round {i + 1}/{runs}: " + ", ".join(f"{k} {v[-1]:.1f}s" for k, v in kinds.items()))
        med = {k: statistics.median(v) for k, v in kinds.items()}
        cold_s = med["from scratch (--no-cache)"]
        fig.header = ["build", "median", "min", "max", "share of a cold build"]
        fig.rows = [[k, fmt_s(m), fmt_s(min(kinds[k])), fmt_s(max(kinds[k])), f"{m / cold_s:.0%}"]
                    for k, m in med.items()]
        share = med["code change"] / cold_s
        fig.verdict = verdict(share <= 0.15)
        fig.summary = (f"code {fmt_s(med['code change'])}, requirements {fmt_s(med['requirements change'])}, "
                       f"cold {fmt_s(cold_s)} (code = {share:.0%} of cold)")
        fig.runs = runs
        fig.notes += [
            "`docker compose build app` (BuildKit) in a temp copy of the project; each round edits "
            "backend/wsgi.py, then backend/requirements.txt, then rebuilds with `--no-cache`",
            f"base image `{stack.vars.get('MONTERO_PYTHON_IMAGE', 'python:3.11-slim')}`; pip downloads "
            "from PyPI on every requirements/cold build (no pip cache in the image, by design)",
        ]
        return fig
    finally:
        stack.close(remove_images=True)


def _size(image: str) -> int:
    return int(json.loads(run(["docker", "image", "inspect", image]).stdout)[0]["Size"])


def fig6(stack: Stack, settings: Settings) -> Figure:
    """App image vs its base and vs a single-stage build of the same app (bench/Dockerfile.single-stage)."""
    fig = Figure(6, "app image size", "≤ base + 60 MB")
    base = stack.vars.get("MONTERO_PYTHON_IMAGE", "python:3.11-slim")
    app = stack.app_image()
    single = f"{app.split(':')[0]}-single:{app.split(':')[-1]}"
    # Built through compose (BuildKit without the buildx plugin), like the real image.
    spec = {"services": {"single": {
        "build": {"context": str(stack.root), "dockerfile": str(REPO / "bench" / "Dockerfile.single-stage"),
                  "args": {"PYTHON_IMAGE": base,
                           "BUILD_PACKAGES": stack.env.get("MONTERO_BUILD_PACKAGES", "gcc libc6-dev")},
                  "secrets": ["ca_certs"]},
        "image": single}},
        "secrets": {"ca_certs": {"file": stack.env.get("MONTERO_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")}}}
    compose_file = stack.root / "bench-single-stage.json"
    compose_file.write_text(json.dumps(spec))
    log("fig6: single-stage build")
    run(["docker", "compose", "-f", str(compose_file), "-p", f"{stack.name}-single", "build", "single"],
        env=stack.env, timeout=1800)
    try:
        sizes = {f"base `{base}`": _size(base), "app (multi-stage, docker/Dockerfile)": _size(app),
                 "same app, single stage (bench/Dockerfile.single-stage)": _size(single)}
    finally:
        run(["docker", "image", "rm", "-f", single], check=False)
    base_b = sizes[f"base `{base}`"]
    app_b = sizes["app (multi-stage, docker/Dockerfile)"]
    fig.header = ["image", "size", "over the base"]
    fig.rows = [[n, f"{b / MiB:.0f} MiB", f"+{(b - base_b) / MiB:.0f} MiB"] for n, b in sizes.items()]
    over = (app_b - base_b) / 1e6
    fig.verdict = verdict(over <= 60)
    fig.summary = f"{app_b / MiB:.0f} MiB = base + {over:.0f} MB (single stage: +" \
                  f"{(sizes['same app, single stage (bench/Dockerfile.single-stage)'] - base_b) / 1e6:.0f} MB)"
    fig.runs = 1
    fig.notes.append("sizes from `docker image inspect` (uncompressed, all layers); MB = 10^6 bytes in the "
                     "target, MiB in the table")
    return fig


__all__ = ["fig5", "fig6", "fmt_ratio"]
