"""Issue 13 point 1 (the Docker boundary): figures 1-3's commands, montero before vs after, A/B.

    python bench/docker_boundary.py BEFORE_TREE [--after AFTER_TREE] [--runs N]

BEFORE_TREE is a copy of the repository at the commit before the change (e.g.
`git archive a994df3 | tar -x -C /tmp/before`); AFTER_TREE (default: this checkout) the
same commit with only the change applied, so nobody else's work is measured with it. Both
are byte-compiled first (PYTHONDONTWRITEBYTECODE would otherwise recompile a stale tree on
every run) and run with this venv's python (`python -m montero_ops`), alternating
before/after after a warm-up, so the machine's drift hits both alike. ps and health run against a small stack this
script starts (three containers of montero-base:bookworm with a healthcheck, its own
compose project) and removes at the end, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.lib import Settings, alternate, fmt_ratio, fmt_s, log, ratio, run

COMPOSE = """services:
  app:
    image: montero-base:bookworm
    command: ["sleep", "infinity"]
    init: true
    healthcheck: {test: ["CMD", "true"], interval: 2s}
  redis:
    image: montero-base:bookworm
    command: ["sleep", "infinity"]
    init: true
    healthcheck: {test: ["CMD", "true"], interval: 2s}
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("before", type=Path)
    parser.add_argument("--after", type=Path, default=REPO)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "docker_boundary.json")
    args = parser.parse_args()
    py = sys.executable
    for tree in (args.before, args.after):
        run([py, "-m", "compileall", "-q", str(tree / "montero_ops")], timeout=300)
    with tempfile.TemporaryDirectory(prefix="montero-bench-boundary-") as tmp:
        root = Path(tmp) / "hclibench"
        (root / "docker").mkdir(parents=True)
        (root / "backend").mkdir()
        (root / "docker" / "compose.yml").write_text(COMPOSE)
        compose = ["docker", "compose", "--project-directory", str(root), "-f", str(root / "docker" / "compose.yml"),
                   "-p", "hclibench"]
        try:
            run([*compose, "up", "-d", "--wait", "--scale", "app=3"], timeout=180)

            def cmd(tree: Path, *argv: str) -> list[str]:
                return ["env", f"PYTHONPATH={tree}", py, "-m", "montero_ops", *argv]

            env = {**os.environ, "MONTERO_PROJECT_DIR": str(root), "COLUMNS": "120"}
            settings = Settings(runs=args.runs, warmup=2)
            rows = []
            for label, argv in (("--help", ["--help"]), ("--version", ["--version"]),
                                ("ps --json", ["ps", "--json"]), ("health", ["health"])):
                steps = {"before": cmd(args.before.resolve(), *argv), "after": cmd(args.after.resolve(), *argv)}
                samples = alternate(steps, settings, env=env)
                b, a = samples["before"], samples["after"]
                rows.append({"command": f"montero {label}", "before_s": round(b.median, 4),
                             "after_s": round(a.median, 4), "after/before": round(ratio(a, b), 3)})
                log(f"montero {label}: before {fmt_s(b.median)}, after {fmt_s(a.median)} "
                    f"(ratio {fmt_ratio(ratio(a, b))})")
        finally:
            run([*compose, "down", "--volumes", "--remove-orphans", "-t", "1"], check=False, timeout=120)
    load = os.getloadavg()
    result = {"before": str(args.before), "after": str(args.after), "runs": args.runs, "load_average_1_5_15": [round(x, 2) for x in load], "cpus": os.cpu_count(),
              "rows": rows}
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
