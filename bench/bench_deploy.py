"""Benchmark: `montero deploy` vs `docker compose up -d --build` of a one-line code change,
3 app replicas behind nginx (production profile), under the e2e keep-alive load loop (not a test).

    MONTERO_E2E_APP_IMAGE=montero-app:e2e-NAME python bench/bench_deploy.py [--runs 5]

One throwaway project (the e2e tests' copy of docker/ and backend/, free loopback ports). Each
round changes one line of backend/wsgi.py, then runs A (`montero deploy --yes --json`), then R
(`montero rollback --yes --json`, back to the release before A) and, after
another one-line change, B (`docker compose --profile production up -d --build` at 3
replicas, what a team does without montero), each while the keep-alive load of
tests/e2e/test_releases_e2e.py counts every response. One warm-up round, then --runs rounds;
prints a markdown table of medians on stdout (progress on stderr). Everything it created is
removed at the end (containers, volumes, release images, the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.e2e import conftest as e2e
from tests.e2e.test_releases_e2e import ADMIN, KeepAliveLoad


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Folders:
    """The one method of pytest's TempPathFactory that the e2e project helper uses."""

    def __init__(self, base: Path) -> None:
        self.base = base

    def mktemp(self, name: str, numbered: bool = False) -> Path:
        path = self.base / name
        path.mkdir(parents=True)
        return path


def images() -> dict[str, str]:
    chosen = {var: os.environ.get(var) or e2e._dotenv_images().get(var) or default
              for var, default in e2e.IMAGE_DEFAULTS.items()}
    chosen["MONTERO_APP_IMAGE"] = e2e.APP_IMAGE
    return chosen


def ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    if done.returncode != 0:
        raise SystemExit(f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def change(p: Any, marker: str) -> None:
    wsgi = p.root / "backend" / "wsgi.py"
    lines = [ln for ln in wsgi.read_text().splitlines() if not ln.startswith("# bench release ")]
    wsgi.write_text("\n".join([*lines, f"# bench release {marker}"]) + "\n")


def measure(p: Any, action: Any) -> dict[str, Any]:
    load = KeepAliveLoad(p)
    started = time.monotonic()
    extra = load.during(action)
    seconds = time.monotonic() - started
    return {"seconds": seconds, "requests": load.count, "failed": len(load.failures),
            "keepalive_closed": load.keepalive_closed, "first_failure": load.failures[:1], **(extra or {})}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    base = Path(os.environ.get("TMPDIR", "/tmp")) / f"montero-bench-deploy-{os.getpid()}"
    maker = e2e._stack_project(Folders(base), images())  # type: ignore[arg-type]
    p = next(maker)
    original = ok(subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", e2e.APP_IMAGE],
                                 capture_output=True, text=True, check=False), "inspect").strip()
    results: dict[str, list[dict[str, Any]]] = {"deploy": [], "compose": [], "rollback": []}
    try:
        p.write_env(SECRET_KEY=os.urandom(32).hex(), DEFAULT_RATE_LIMIT="100000 per minute",
                    LOGIN_LIMIT_ACCOUNT="1000 per minute", LOGIN_LIMIT_ADDRESS="1000 per minute",
                    MONTERO_KEEP_RELEASES="2")
        ok(p.run_montero("tls", "self-signed", "--domain", "localhost"), "tls self-signed")
        ok(p.run_montero("up", "--profile", "production", "--scale", "app=3", timeout=900), "up")
        p.compose_files.append(p.root / "docker" / "compose.production.yml")
        p.profiles.append("production")
        ok(p.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email", ADMIN["email"],
                     "--password", ADMIN["password"], "--name", "Admin"), "create-admin")
        for round_ in range(args.runs + 1):
            change(p, f"A{round_}")

            def deploy() -> dict[str, Any]:
                done = p.run_montero("deploy", "--yes", "--json", timeout=1800)
                receipt = json.loads(ok(done, "montero deploy"))["release"]["receipt"]
                return {"receipt": receipt}

            a = measure(p, deploy)

            def rollback() -> dict[str, Any]:
                done = p.run_montero("rollback", "--yes", "--json", timeout=1800)
                receipt = json.loads(ok(done, "montero rollback"))["release"]["receipt"]
                return {"receipt": receipt}

            # Back to the release before this deploy, under the same load (issue 20: rollback duration).
            r = measure(p, rollback)
            change(p, f"B{round_}")
            # Without montero: compose rebuilds and recreates the replicas (same tag, same scale).
            b = measure(p, lambda: ok(p.compose("up", "-d", "--build", "--scale", "app=3", "--wait",
                                                timeout=1800), "compose up --build") and None)
            label = "warm-up" if round_ == 0 else f"run {round_}"
            log(f"{label}: rollback {r['seconds']:.1f}s {r['failed']}/{r['requests']} failed "
                f"({r['keepalive_closed']} keep-alive closes), receipt {r['receipt']}")
            log(f"{label}: deploy {a['seconds']:.1f}s {a['failed']}/{a['requests']} failed "
                f"({a['keepalive_closed']} keep-alive closes), receipt {a['receipt']}; compose up --build "
                f"{b['seconds']:.1f}s {b['failed']}/{b['requests']} failed ({b['keepalive_closed']} keep-alive closes)"
                f" {b['first_failure']}")
            if round_:
                results["deploy"].append(a)
                results["compose"].append(b)
                results["rollback"].append(r)
            # The next deploy must start from what runs: compose left the configured tag on its own build.
    finally:
        subprocess.run(["docker", "tag", original, e2e.APP_IMAGE], capture_output=True, check=False)
        history = p.root / ".montero" / "releases.json"
        if history.is_file():
            for tag in {r["image"] for r in json.loads(history.read_text())["releases"]} - {e2e.APP_IMAGE}:
                subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
        try:
            next(maker)
        except StopIteration:
            pass
    load = os.getloadavg()
    med = statistics.median
    d, c = results["deploy"], results["compose"]
    print(f"Medians of {args.runs} runs after a warm-up; load average at the end {load[0]:.2f} / {load[1]:.2f}.\n")
    print("| one-line code change, 3 replicas behind nginx | wall time (s) | requests during it | failed "
          "| keep-alive closes retried |")
    print("|---|---|---|---|---|")
    print(f"| `montero deploy` | {med(r['seconds'] for r in d):.1f} | {med(r['requests'] for r in d):.0f} | "
          f"{med(r['failed'] for r in d):.0f} (max {max(r['failed'] for r in d)}) | "
          f"{med(r['keepalive_closed'] for r in d):.0f} (max {max(r['keepalive_closed'] for r in d)}) |")
    rb = results["rollback"]
    print(f"| `montero rollback` (to the release before) | {med(r['seconds'] for r in rb):.1f} | "
          f"{med(r['requests'] for r in rb):.0f} | {med(r['failed'] for r in rb):.0f} (max "
          f"{max(r['failed'] for r in rb)}) | {med(r['keepalive_closed'] for r in rb):.0f} (max "
          f"{max(r['keepalive_closed'] for r in rb)}) |")
    print(f"| `docker compose up -d --build` | {med(r['seconds'] for r in c):.1f} | "
          f"{med(r['requests'] for r in c):.0f} | {med(r['failed'] for r in c):.0f} (max "
          f"{max(r['failed'] for r in c)}) | {med(r['keepalive_closed'] for r in c):.0f} |")
    print("\n| run | deploy s | failed / requests | rollback s | failed / requests | compose s | failed / requests |")
    print("|---|---|---|---|---|---|---|")
    for i, (x, y, z) in enumerate(zip(d, rb, c, strict=True), 1):
        print(f"| {i} | {x['seconds']:.1f} | {x['failed']} / {x['requests']} | {y['seconds']:.1f} | "
              f"{y['failed']} / {y['requests']} | {z['seconds']:.1f} | {z['failed']} / {z['requests']} |")
    receipts = [r["receipt"] for r in d]
    print(f"\nmontero's own receipt (medians): duration {med(r['duration_s'] for r in receipts):.1f} s, probes "
          f"{med(r['probes_sent'] for r in receipts):.0f} sent / {max(r['probes_failed'] for r in receipts)} failed "
          f"(max), {med(r['reconnects'] for r in receipts):.0f} keep-alive reconnects, p50 "
          f"{med(r['p50_ms'] for r in receipts):.1f} ms, p99 {med(r['p99_ms'] for r in receipts):.1f} ms")


if __name__ == "__main__":
    main()
