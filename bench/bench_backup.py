"""Benchmark: `montero backup sqlite` against `sqlite3 .backup` on a large database (not a test).

    python bench/bench_backup.py [--size-mb 1024] [--runs 5] [--workdir /tmp/montero-bench-backup]

Builds a SQLite database of about --size-mb in WAL mode inside a throwaway project folder,
then, idle and with a writer process inserting all the time, alternates the commands
(A B A B …, after one warm-up each) and reports medians and their ratio. Then times
`montero restore sqlite` (which includes its safety backup of the current database).
Prints a markdown table on stdout; progress goes to stderr.

Like with like (issue 20): `montero backup sqlite` copies with the backup API in one step, then
runs PRAGMA integrity_check on the copy and hashes it; the comparison is what a careful user types
for the same verified backup, `sqlite3 .backup` + `PRAGMA integrity_check` on the copy +
`sha256sum`. `sqlite3 .backup` alone (copy only, 100 pages per step, restarting when another
process writes) is kept as a second column.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_db(db: Path, size_mb: int) -> None:
    """Rows of ~1 KiB in three tables with indexes: integrity_check has real work to do."""
    db.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(db)
    con.executescript("""
        PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
        CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY);
        INSERT INTO alembic_version VALUES ('bench0001');
        CREATE TABLE clients (id INTEGER PRIMARY KEY, nit TEXT UNIQUE, name TEXT, notes TEXT);
        CREATE TABLE affiliations (id INTEGER PRIMARY KEY, client_id INTEGER, kind TEXT, payload TEXT);
        CREATE INDEX ix_aff_client ON affiliations(client_id);
        CREATE TABLE audit (id INTEGER PRIMARY KEY, at TEXT, entity TEXT, diff TEXT);
    """)
    target = size_mb * 1024 * 1024
    batch, n = 5000, 0
    blob = os.urandom(300).hex()  # 600 hex characters
    while db.stat().st_size < target:
        con.executemany("INSERT INTO clients (nit, name, notes) VALUES (?, ?, ?)",
                        [(f"9{n + i:011d}", f"Cliente {n + i}", blob[: (n + i) % 600]) for i in range(batch)])
        con.executemany("INSERT INTO affiliations (client_id, kind, payload) VALUES (?, ?, ?)",
                        [(n + i, "eps", blob) for i in range(batch)])
        con.executemany("INSERT INTO audit (at, entity, diff) VALUES (datetime('now'), 'client', ?)",
                        [(blob[:200],) for _ in range(batch)])
        con.commit()
        n += batch
    con.execute("PRAGMA journal_mode=WAL")
    con.close()


def writer(db: str, stop_file: str, counter: multiprocessing.Value) -> None:  # type: ignore[type-arg]
    """One small transaction after another, like the app under load."""
    con = sqlite3.connect(db, timeout=60)
    while not os.path.exists(stop_file):
        with con:
            con.execute("INSERT INTO audit (at, entity, diff) VALUES (datetime('now'), 'bench', 'x')")
        with counter.get_lock():
            counter.value += 1
        time.sleep(0.002)
    con.close()


def timed(cmd: list[str], timeout: float) -> float | None:
    """Wall time, or None when it did not finish within `timeout` (its whole process group is killed:
    a `sh -c` chain's sqlite3 must not go on writing into the next run's folder)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return None
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} … failed: {err.decode()[-500:]}")
    return time.perf_counter() - start


def montero(project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "montero_ops", "--project-dir", str(project), *args]


def careful(db: Path, copy: Path) -> list[str]:
    """What a careful user types for a verified backup: copy, check the copy, hash it."""
    return ["sh", "-c", f"sqlite3 '{db}' \".backup '{copy}'\" && sqlite3 '{copy}' 'PRAGMA integrity_check' "
            f"| grep -qx ok && sha256sum '{copy}' > '{copy}.sha256'"]


def compare(project: Path, db: Path, out: Path, runs: int, timeout: float,
            plain: bool = True) -> dict[str, list[float | None]]:
    """Alternate the commands (montero, the careful chain, and with `plain` the copy alone); each output
    is deleted before the next run. The first round is the warm-up."""
    steps: dict[str, list[str]] = {
        "montero": montero(project, "backup", "sqlite", "--dir", str(out)),
        "careful": careful(db, out / "copy.db"),
    }
    if plain:
        steps["plain"] = ["sqlite3", str(db), f".backup '{out / 'copy.db'}'"]
    results: dict[str, list[float | None]] = {name: [] for name in steps}
    for i in range(runs + 1):
        line = []
        for name, cmd in steps.items():
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            t = timed(cmd, timeout)
            line.append(f"{name} {t if t is None else round(t, 2)} s")
            if i:
                results[name].append(t)
        log(f"  run {i}{' (warm-up)' if i == 0 else ''}: " + ", ".join(line))
    shutil.rmtree(out, ignore_errors=True)
    return results


def fmt(values: list[float | None], timeout: float) -> str:
    done = [v for v in values if v is not None]
    if not done:
        return f"did not finish within {timeout:.0f} s"
    text = f"{statistics.median(done):.2f} s"
    if len(done) < len(values):
        text += f" ({len(values) - len(done)} of {len(values)} runs did not finish within {timeout:.0f} s)"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024, help="database size to build (default 1024)")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per figure (default 5, minimum 5)")
    parser.add_argument("--workdir", default="/tmp/montero-bench-backup", help="scratch folder (removed at the end)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="bound per command run under writes (default: 10x the idle sqlite3 median, at least 60 s);"
                             " `sqlite3 .backup` restarts whenever another process writes and may never finish")
    parser.add_argument("--json", default="", help="also write the medians to this file (bench/run.py reads it)")
    args = parser.parse_args()
    runs = max(5, args.runs)
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    project = work / "benchproj"
    (project / "docker").mkdir(parents=True)
    (project / "docker" / "compose.yml").write_text("services: {}\n")
    db = project / "data" / "mi_sistema.db"
    out = work / "out"
    try:
        log(f"building a {args.size_mb} MB database at {db}")
        t0 = time.perf_counter()
        build_db(db, args.size_mb)
        size = db.stat().st_size
        log(f"  built {size / 1024 / 1024:.0f} MB in {time.perf_counter() - t0:.0f} s")

        log("idle: montero backup sqlite vs sqlite3 .backup + integrity_check + sha256sum vs sqlite3 .backup")
        idle = compare(project, db, out, runs, 3600)
        bound = args.timeout or max(60.0, 10 * statistics.median([v for v in idle["plain"] if v]))

        log("under writes: a writer process inserts continuously")
        stop = work / "stop"
        counter = multiprocessing.Value("i", 0)
        proc = multiprocessing.Process(target=writer, args=(str(db), str(stop), counter))
        proc.start()
        t_writes = time.perf_counter()
        try:
            # The plain copy is the careful chain's first step: under writes it is not run on its own.
            busy = compare(project, db, out, runs, bound, plain=False)
        finally:
            stop.touch()
            proc.join(60)
        rate = counter.value / (time.perf_counter() - t_writes)
        stop.unlink()

        log("restore: montero restore sqlite (includes the safety backup of the current database)")
        backups = work / "backups"
        subprocess.run(montero(project, "backup", "sqlite", "--dir", str(backups)), check=True, capture_output=True)
        backup_id = json.loads(subprocess.run(montero(project, "backups", "list", "--json", "--dir", str(backups)),
                                              check=True, capture_output=True, text=True).stdout)[0]["id"]
        restores: list[float] = []
        for i in range(runs):
            t = timed(montero(project, "restore", "sqlite", backup_id, "--yes", "--dir", str(backups)), 3600)
            assert t is not None
            restores.append(t)
            for extra in backups.iterdir():  # drop the safety backup so the disk does not fill
                if extra.name != backup_id:
                    shutil.rmtree(extra)
            log(f"  run {i + 1}: {t:.2f} s")

        def med(values: list[float | None]) -> float | None:
            done = [v for v in values if v is not None]
            return statistics.median(done) if done else None

        def rat(a: list[float | None], b: list[float | None]) -> str:
            ma, mb = med(a), med(b)
            if ma is None:
                return "montero did not finish"
            return f"{ma / mb:.2f}" if mb else "the other did not finish"

        print(f"### Backups: {size / 1024 / 1024:.0f} MB SQLite database (WAL), median of {runs} alternating runs\n")
        print("| case | `montero backup sqlite` | `sqlite3 .backup` + `PRAGMA integrity_check` + `sha256sum` | ratio "
              "| `sqlite3 .backup` alone (copy only) | ratio |")
        print("|---|---|---|---|---|---|")
        print(f"| idle | {fmt(idle['montero'], 3600)} | {fmt(idle['careful'], 3600)} | "
              f"{rat(idle['montero'], idle['careful'])} | {fmt(idle['plain'], 3600)} | {rat(idle['montero'], idle['plain'])} |")
        print(f"| under writes ({rate:.0f} inserts/s) | {fmt(busy['montero'], bound)} | {fmt(busy['careful'], bound)} | "
              f"{rat(busy['montero'], busy['careful'])} | (the chain's first step) | – |")
        print(f"| `montero restore sqlite` (incl. safety backup) | {statistics.median(restores):.2f} s | – | – | – | – |")
        print("\n`montero backup sqlite` = one-step backup API copy, then PRAGMA integrity_check of the copy and its "
              "SHA-256 (in parallel) + manifest; the careful chain does the same three steps one after the other; "
              "`sqlite3 .backup` alone only copies (100 pages per step, restarting when another connection writes).")
        if args.json:
            Path(args.json).write_text(json.dumps({
                "size_mb": round(size / 1024 / 1024), "runs": runs, "bound_s": bound, "writes_per_s": round(rate),
                "idle": {k: med(v) for k, v in idle.items()}, "busy": {k: med(v) for k, v in busy.items()},
                "busy_unfinished": {k: sum(1 for x in v if x is None) for k, v in busy.items()},
                "restore": statistics.median(restores)}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
