"""Benchmark: `montero backups drill` of a ~1 GB backup, and what it costs the running stack (not a test).

    python bench/bench_drill.py [--size-mb 1024] [--runs 3] [--load-seconds 20] [--threads 4]

Issue 15's drill figure: a throwaway copy of the project (bench/stack.py: its own compose
project, ports, .env, app image) is started with `montero up`; its SQLite database is grown to
about --size-mb with a filler table (the app's own tables and migrations stay as they are, so
the drill's migrate/login/API checks run for real); `montero backup` makes the backup. Then,
--runs times: /health req/s of the running stack for --load-seconds with no drill (closed
loop, --threads clients, a new connection per request), then the same load while
`montero backups drill ID --json` runs. Reported: the drill's own restore / healthy /
recovery seconds (its JSON), its wall time, /health req/s without and during the drill and
the requests that failed. Medians over the runs; markdown on stdout. Everything is removed at
the end (Stack.close).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.lib import log, run, wait_http
from bench.stack import Stack


def grow(db: Path, size_mb: int) -> int:
    """A filler table until the file is ~size_mb (the app keeps running: WAL, short transactions)."""
    con = sqlite3.connect(db, timeout=30)
    con.execute("PRAGMA busy_timeout=30000")
    con.execute("CREATE TABLE IF NOT EXISTS bench_filler (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    blob = os.urandom(400).hex()  # 800 characters a row
    rows = 0
    while db.stat().st_size < size_mb * 1024 * 1024:
        with con:
            con.executemany("INSERT INTO bench_filler (payload) VALUES (?)",
                            [(f"{rows + i:010d}{blob}",) for i in range(5000)])
        rows += 5000
        con.execute("PRAGMA wal_checkpoint(PASSIVE)")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    # Written as root, a -wal/-shm this made would lock the app (uid 1000) out: owned like the file.
    owner = db.stat()
    for suffix in ("-wal", "-shm"):
        side = Path(f"{db}{suffix}")
        if side.exists() and os.geteuid() == 0:
            os.chown(side, owner.st_uid, owner.st_gid)
    return rows


class Load:
    """Closed-loop GET /health from a few threads; counts answers per outcome."""

    def __init__(self, url: str, threads: int) -> None:
        self.url, self.threads = url, threads
        self.ok = self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []
        self.started = self.stopped = 0.0

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=10) as resp:
                    good = resp.status == 200
            except OSError:
                good = False
            with self._lock:
                if good:
                    self.ok += 1
                else:
                    self.failed += 1

    def __enter__(self) -> Self:
        self.started = time.monotonic()
        self._workers = [threading.Thread(target=self._loop, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)
        self.stopped = time.monotonic()

    @property
    def rate(self) -> float:
        return self.ok / max(self.stopped - self.started, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--load-seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=4)
    args = parser.parse_args()
    stack = Stack("drill")
    try:
        log("building the app image and starting the stack (montero up)")
        stack.build("app")
        run(stack.montero_cmd("up"), env=stack.env, timeout=600)
        health = f"http://127.0.0.1:{stack.app_port}/health"
        wait_http(health, timeout=180, expect=lambda s: s == 200)
        db = stack.root / "data" / "mi_sistema.db"
        log(f"growing {db.name} to ~{args.size_mb} MB")
        rows = grow(db, args.size_mb)
        made = json.loads(run(stack.montero_cmd("backup", "--json"), env=stack.env, timeout=1800).stdout)
        backup, size = made["id"], sum(int(f["size"]) for f in made["files"])
        log(f"backup {backup}: {size / 1e6:.0f} MB ({rows} filler rows)")
        samples: list[dict[str, float]] = []
        for i in range(args.runs):
            with Load(health, args.threads) as idle:
                time.sleep(args.load_seconds)
            t0 = time.monotonic()
            with Load(health, args.threads) as during:
                done = run(stack.montero_cmd("backups", "drill", backup, "--json"), env=stack.env, timeout=3600,
                           check=False)
            wall = time.monotonic() - t0
            result = json.loads(done.stdout) if done.stdout.strip().startswith("{") else {}
            if done.returncode != 0 or not result.get("ok"):
                raise SystemExit(f"drill {i + 1} failed (exit {done.returncode}): {done.stderr[-800:]}")
            sample = {"restore": result["restore_seconds"], "healthy": result["healthy_seconds"],
                      "recovery": result["recovery_seconds"], "wall": wall, "idle_rate": idle.rate,
                      "drill_rate": during.rate, "failed": float(idle.failed + during.failed)}
            samples.append(sample)
            log(f"  run {i + 1}: recovery {sample['recovery']:.1f} s (restore {sample['restore']:.1f} + healthy "
                f"{sample['healthy']:.1f}), drill {wall:.1f} s; /health {idle.rate:.0f} req/s idle, "
                f"{during.rate:.0f} during, {idle.failed + during.failed} failed")

        def med(key: str) -> float:
            return statistics.median(s[key] for s in samples)

        cost = 100 * (1 - med("drill_rate") / med("idle_rate"))
        print(f"| figure | value |\n|---|---|\n"
              f"| backup size | {size / 1e6:.0f} MB (SQLite ~{args.size_mb} MB target) |\n"
              f"| drill: seconds to restore (copy, checks, data in place), median of {args.runs} | {med('restore'):.1f} s |\n"
              f"| drill: seconds from `up` to healthy, median of {args.runs} | {med('healthy'):.1f} s |\n"
              f"| **recovery time** (restore + healthy), median of {args.runs} | **{med('recovery'):.1f} s** "
              f"(range {min(s['recovery'] for s in samples):.1f}-{max(s['recovery'] for s in samples):.1f}) |\n"
              f"| whole drill (down -v of the throwaway project included), median | {med('wall'):.1f} s |\n"
              f"| running stack's /health, no drill ({args.threads} clients, {args.load_seconds:.0f} s) | "
              f"{med('idle_rate'):.0f} req/s |\n"
              f"| running stack's /health during the drill | {med('drill_rate'):.0f} req/s ({cost:.0f} % less) |\n"
              f"| failed /health requests, all runs | {int(sum(s['failed'] for s in samples))} |")
    finally:
        stack.close()


if __name__ == "__main__":
    main()
