"""Benchmark: `montero backups drill` of a ~1 GB backup, and its cost to the running stack (not a test).

    python bench/bench_drill.py [--size-mb 1024] [--runs 5] [--before 10] [--threads 4]

A throwaway stack (bench/stack.py: its own folder, project name, ports; the app image built
once) comes up and migrates its empty database; the app is stopped, the app's own tables
(clients, affiliations, audit_log) are filled to about --size-mb from the host, the app is
started again and serves. One `montero backup --json` (SQLite + Redis, verified) of it. Then,
after one warm-up, --runs times: a bounded /health load on loopback (--threads threads, each
with its own keep-alive connection; bounded in seconds and in requests) measures req/s for
--before seconds, then `montero backups drill ID --json` runs while the load goes on, and req/s
over the drill's wall time is compared with the window just before it, in the same run. The
drill's own figures (restore_seconds, healthy_seconds, recovery_seconds) come from its --json.

Everything it creates (the stack's containers, volumes and network, any throwaway drill project
left by an interrupted drill, the app image it built, the folder with the database and the
backup) is removed at the end, also on failure. Medians as a markdown table on stdout;
progress on stderr.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.lib import BenchError, run
from bench.stack import APP_IMAGE, Stack

LOAD_MAX_SECONDS = 1800.0  # one load loop never outlives this, whatever the drill does
LOAD_MAX_REQUESTS = 5_000_000
DRILL_TIMEOUT = 1500.0


def log(message: str) -> None:
    print(f"[drill-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fill(db: Path, size_mb: int) -> dict[str, int]:
    """Rows of the app's own schema (as migrated by the app) until the file is ~size_mb: one client,
    a few affiliations and audit entries with ~700-byte change records each, as an app that has
    run for years holds. Returns the row count per table."""
    con = sqlite3.connect(db, timeout=60)
    con.execute("PRAGMA journal_mode=DELETE")
    con.execute("PRAGMA synchronous=OFF")
    target = size_mb * 1024 * 1024
    n, batch = 0, 2000
    changes = json.dumps({"notes": ["", "x" * 330], "address": ["", "y" * 330]})
    while db.stat().st_size < target:
        con.executemany(
            "INSERT INTO clients (id, name, nit, email, phone, city, active, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, 'Bogotá', 1, '2024-01-01 00:00:00', '2024-01-01 00:00:00')",
            [(n + i + 1, f"Cliente {n + i}", f"9{n + i:011d}", f"c{n + i}@example.com", f"+57 300 {n + i:07d}")
             for i in range(batch)])
        con.executemany(
            "INSERT INTO affiliations (client_id, employee_name, document_number, eps, arl, pension_fund, salary, "
            "start_date, status, created_at, updated_at) VALUES (?, ?, ?, 'Sura', 'Positiva', 'Porvenir', 1300000, "
            "'2024-01-01', 'active', '2024-01-01 00:00:00', '2024-01-01 00:00:00')",
            [(n + i + 1, f"Empleado {n + i}-{k}", f"10{n + i:08d}{k}") for i in range(batch) for k in range(2)])
        con.executemany(
            "INSERT INTO audit_log (user_id, actor_email, action, entity, entity_id, changes, created_at) "
            "VALUES (NULL, 'ops@example.com', 'update', 'client', ?, ?, '2024-01-01 00:00:00')",
            [(n + i + 1, changes) for i in range(batch) for _ in range(3)])
        con.commit()
        n += batch
    con.execute("PRAGMA journal_mode=WAL")
    counts = {t: int(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0])
              for t in ("clients", "affiliations", "audit_log")}
    con.close()
    return counts


@dataclass
class Load:
    """A bounded /health load: `threads` loops, each with one keep-alive connection, until stop()
    or LOAD_MAX_SECONDS or LOAD_MAX_REQUESTS. Completions are timestamped so any window can be read."""

    port: int
    threads: int
    done: list[list[float]] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        self._stop.clear()
        self.done = [[] for _ in range(self.threads)]
        self.failed = [0] * self.threads
        self._workers = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(self.threads)]
        for w in self._workers:
            w.start()

    def _loop(self, i: int) -> None:
        deadline = time.monotonic() + LOAD_MAX_SECONDS
        per_thread = LOAD_MAX_REQUESTS // self.threads
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self._stop.is_set() and time.monotonic() < deadline and len(self.done[i]) < per_thread:
            try:
                conn.request("GET", "/health")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.done[i].append(time.monotonic())
                else:
                    self.failed[i] += 1
            except (OSError, http.client.HTTPException):
                self.failed[i] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(30)

    def rate(self, start: float, end: float) -> float:
        n = sum(1 for times in self.done for t in times if start <= t < end)
        return n / (end - start)


def drill(stack: Stack, backup: str, load: Load, before: float) -> dict[str, float]:
    """One run: `before` seconds of load alone, then the drill under the same load."""
    load.start()
    try:
        time.sleep(1.0)  # connections open, workers warm
        t0 = time.monotonic()
        time.sleep(before)
        t1 = time.monotonic()
        failed_before = sum(load.failed)
        proc = subprocess.run(montero(stack, "backups", "drill", backup, "--json"), env=stack.env, text=True,
                              capture_output=True, timeout=DRILL_TIMEOUT, check=False)
        t2 = time.monotonic()
    finally:
        load.stop()
    if proc.returncode != 0:
        raise BenchError(f"drill exited {proc.returncode}: {proc.stderr.strip()[-600:]}")
    result = json.loads(proc.stdout)
    if not result.get("ok") or not result.get("cleaned_up"):
        raise BenchError(f"drill did not pass or left its project: {proc.stdout[-600:]}")
    rps_before, rps_during = load.rate(t0, t1), load.rate(t1, t2)
    return {"wall": t2 - t1, "restore": float(result["restore_seconds"]), "healthy": float(result["healthy_seconds"]),
            "recovery": float(result["recovery_seconds"]), "rps_before": rps_before, "rps_during": rps_during,
            "ratio": rps_during / rps_before if rps_before else float("nan"),
            "failed_before": float(failed_before), "failed_during": float(sum(load.failed) - failed_before)}


def montero(stack: Stack, *args: str) -> list[str]:
    return [sys.executable, "-m", "montero_ops", "--project-dir", str(stack.root), "--project-name", stack.name, *args]


def remove_drill_leftovers(stack: Stack) -> None:
    """Throwaway projects of an interrupted drill (named <project>-drill-xxxxxx): containers, volumes, networks."""
    prefix = f"{stack.name}-drill-"
    label = "label=com.docker.compose.project"
    for kind, listing in (("container", ["docker", "ps", "-a"]), ("volume", ["docker", "volume", "ls"]),
                          ("network", ["docker", "network", "ls"])):
        out = run([*listing, "--filter", label, "--format",
                   '{{.ID}} {{.Label "com.docker.compose.project"}}' if kind != "volume"
                   else '{{.Name}} {{.Label "com.docker.compose.project"}}'], check=False).stdout
        ids = [ln.split()[0] for ln in out.splitlines() if len(ln.split()) == 2 and ln.split()[1].startswith(prefix)]
        if ids:
            log(f"removing {len(ids)} leftover drill {kind}(s)")
            run(["docker", kind, "rm", "-f", *ids] if kind != "network" else ["docker", "network", "rm", *ids],
                check=False)


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def rng(rows: list[dict[str, float]], key: str, fmt: str) -> str:
    return f"{format(min(r[key] for r in rows), fmt)}-{format(max(r[key] for r in rows), fmt)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5, help="measured drills after the warm-up (default 5)")
    parser.add_argument("--before", type=float, default=10.0, help="seconds of load alone before each drill")
    parser.add_argument("--threads", type=int, default=4, help="/health load threads (default 4)")
    parser.add_argument("--json", default="", help="also write every run's figures to this file")
    args = parser.parse_args()
    load_start = os.getloadavg()
    stack = Stack("drill")
    try:
        log(f"stack {stack.name} in {stack.root}; building the app image {APP_IMAGE}")
        stack.build("app")
        stack.up()
        db = stack.root / "data" / "mi_sistema.db"
        stack.compose("stop", "app")
        log(f"filling {db.name} to ~{args.size_mb} MB with the app's tables")
        t = time.perf_counter()
        counts = fill(db, args.size_mb)
        if os.geteuid() == 0:  # the app runs as uid 1000
            for path in db.parent.iterdir():
                os.chown(path, 1000, 1000)
        size = db.stat().st_size
        log(f"  {size / 1e6:.0f} MB, {counts} in {time.perf_counter() - t:.0f} s")
        stack.up()
        t = time.perf_counter()
        made = run(montero(stack, "backup", "--json"), env=stack.env, timeout=1800)
        backup = json.loads(made.stdout)["id"]
        backup_s = time.perf_counter() - t
        folder = stack.root / "backups" / backup
        bsize = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        log(f"backup {backup}: {bsize / 1e6:.0f} MB in {backup_s:.0f} s")
        load = Load(stack.app_port, args.threads)
        rows: list[dict[str, float]] = []
        for i in range(args.runs + 1):
            r = drill(stack, backup, load, args.before)
            log(f"  run {i}{' (warm-up)' if i == 0 else ''}: restore {r['restore']:.1f} s + healthy "
                f"{r['healthy']:.1f} s = {r['recovery']:.1f} s (drill wall {r['wall']:.1f} s); /health "
                f"{r['rps_before']:.0f} req/s before, {r['rps_during']:.0f} during ({r['ratio']:.2f}); failed "
                f"{r['failed_before']:.0f}/{r['failed_during']:.0f}; load {os.getloadavg()[0]:.1f}")
            if i:
                rows.append(r)
        # Where the restore's seconds go, and the one step the drill does between restore and `up`
        # (outside the recovery time, inside its wall time): each timed alone, with no load running.
        from montero_ops.services.backups import sqlite_db, verify_backup

        verify_s, checksum_s = [], []
        for _ in range(args.runs):
            t = time.perf_counter()
            checked = verify_backup(folder)
            verify_s.append(time.perf_counter() - t)
            if not checked.ok:
                raise BenchError(f"backup does not verify: {checked.problems}")
            t = time.perf_counter()
            sqlite_db.table_checksums(db)
            checksum_s.append(time.perf_counter() - t)
        log(f"alone: verify_backup {statistics.median(verify_s):.1f} s, table_checksums "
            f"{statistics.median(checksum_s):.1f} s")
        if args.json:
            Path(args.json).write_text(json.dumps({"size_bytes": size, "backup_bytes": bsize, "tables": counts,
                                                   "runs": rows, "verify_s": verify_s,
                                                   "checksums_s": checksum_s, "load_start": load_start,
                                                   "load_end": os.getloadavg()}, indent=1) + "\n")
        n = len(rows)
        print("| figure | value |\n|---|---|\n"
              f"| database / backup size | {size / 1e6:.0f} MB SQLite ({', '.join(f'{v:,} {k}' for k, v in counts.items())}) "
              f"/ {bsize / 1e6:.0f} MB backup (SQLite + Redis) |\n"
              f"| drill: restore (backup verified, copied, checksum-checked into the throwaway ./data), median of {n} | "
              f"{med(rows, 'restore'):.1f} s (range {rng(rows, 'restore', '.1f')}) |\n"
              f"| of which: verifying the backup first (every file's SHA-256, `PRAGMA integrity_check`), timed alone, "
              f"median of {n} | {statistics.median(verify_s):.1f} s |\n"
              f"| drill: `up` to every container healthy, median of {n} | "
              f"{med(rows, 'healthy'):.1f} s (range {rng(rows, 'healthy', '.1f')}) |\n"
              f"| drill: recovery time (restore + healthy, as the drill records it), median of {n} | "
              f"**{med(rows, 'recovery'):.1f} s** (range {rng(rows, 'recovery', '.1f')}) |\n"
              f"| drill: wall time of `montero backups drill ID --json` (also the checks and the removal), median of {n} | "
              f"{med(rows, 'wall'):.1f} s (range {rng(rows, 'wall', '.1f')}) |\n"
              f"| of the wall time: every table's checksum of the restored file (done twice by the drill: "
              f"before `up` and in the checks), timed alone, median of {n} | {statistics.median(checksum_s):.1f} s |\n"
              f"| running stack: `/health` req/s in the {args.before:.0f} s before the drill, median of {n} | "
              f"{med(rows, 'rps_before'):.0f} (range {rng(rows, 'rps_before', '.0f')}) |\n"
              f"| running stack: `/health` req/s during the drill, median of {n} | "
              f"{med(rows, 'rps_during'):.0f} (range {rng(rows, 'rps_during', '.0f')}) |\n"
              f"| ratio during / before (per run, then the median) | **{med(rows, 'ratio'):.2f}** "
              f"(range {rng(rows, 'ratio', '.2f')}) |\n"
              f"| failed `/health` requests during the drills | {sum(int(r['failed_during']) for r in rows)} |")
        log(f"load average at the start {load_start[0]:.1f}, at the end {os.getloadavg()[0]:.1f}")
    finally:
        log("cleaning up")
        remove_drill_leftovers(stack)
        stack.close(remove_images=True)
        run(["docker", "image", "rm", "-f", APP_IMAGE], check=False)


if __name__ == "__main__":
    main()
