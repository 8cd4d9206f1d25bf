"""Benchmark: `montero backups push` against plain `restic backup` of the same files (not a test).

    python bench/bench_offsite.py [--size-mb 1024] [--runs 5] [--workdir /tmp/montero-bench-offsite]

Builds a SQLite database of about --size-mb (bench_backup.build_db), makes one montero backup
of it, then alternates, after one warm-up pair, A = `montero backups push ID` into a fresh
local-path restic repository (montero checks the backup's checksums, initialises the
repository, sends) and B = `restic init` + `restic backup FOLDER` into another fresh one:
the same files, the same work restic does, in the same run. Then the dedup figure: 1% of
the rows changed, a new backup, and `backups push` of it into the repository of the first
push: bytes sent (restic's data_added) against the first push's, --runs times for each of two
patterns (the newest 1% of every table; 1% spread evenly), medians. Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_backup import build_db, log, montero

PASSWORD = "bench-offsite-password-not-a-secret"


def run(cmd: list[str], env: dict[str, str], cwd: Path | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} … failed: {done.stderr[-800:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workdir", default="/tmp/montero-bench-offsite")
    args = parser.parse_args()
    runs = max(5, args.runs)
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    project = work / "benchproj"
    (project / "docker").mkdir(parents=True)
    (project / "docker" / "compose.yml").write_text("services: {}\n")
    db = project / "data" / "mi_sistema.db"
    log(f"building a {args.size_mb} MB database")
    build_db(db, args.size_mb)
    env = {**os.environ, "RESTIC_CACHE_DIR": str(work / "cache"), "NO_COLOR": "1", "DOCKER_HOST": "unix:///nonexistent"}
    env.pop("MONTERO_BACKUP_DIR", None)
    _, out = run(montero(project, "backup", "sqlite", "--json"), env)
    first = json.loads(out)["id"]
    folder = project / "backups" / first
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    log(f"backup {first}: {size / 1e6:.0f} MB")
    ours, theirs, sent = [], [], []
    for i in range(runs + 1):
        repo_a, repo_b = work / f"repo-a{i}", work / f"repo-b{i}"
        (project / ".env").write_text(f"MONTERO_OFFSITE_REPOSITORY={repo_a}\nMONTERO_OFFSITE_PASSWORD={PASSWORD}\n")
        a, out = run(montero(project, "backups", "push", first, "--json"), env)
        benv = {**env, "RESTIC_REPOSITORY": str(repo_b), "RESTIC_PASSWORD": PASSWORD}
        b0, _ = run(["restic", "init"], benv)
        b1, _ = run(["restic", "backup", "--host", "montero", first], benv, cwd=folder.parent)
        b = b0 + b1
        log(f"  run {i}{' (warm-up)' if i == 0 else ''}: push {a:.2f} s, restic init+backup {b:.2f} s")
        if i:
            ours.append(a)
            theirs.append(b)
            sent.append(json.loads(out)[0]["bytes_added"])
        if i < runs:
            shutil.rmtree(repo_a)
        shutil.rmtree(repo_b)
    # 1% of the rows changed, a new backup, `backups push` of it into the last run's repository;
    # --runs times per pattern (each on top of the one before: what a daily push sees), then the
    # median. Two patterns: the newest 1% of every table (where an application's inserts and
    # recent edits land: contiguous pages at the end of the file), and 1% spread evenly (every
    # 100th row of every table: then nearly every restic chunk of ~1 MiB holds a change).
    first_sent = statistics.median(sent)
    rows = []
    for label, where in (("the newest 1% of the rows of every table", "id > (SELECT MAX(id) FROM {t}) * 99 / 100"),
                         ("1% spread evenly (every 100th row of every table)", "id % 100 = {k}")):
        added, processed, seconds = [], [], []
        changed = total = 0
        for k in range(runs):
            con = sqlite3.connect(db)
            changed = 0
            for table, column in (("clients", "notes"), ("affiliations", "payload"), ("audit", "diff")):
                # Same length, new bytes: the row stays in its page, as an edit of a field does.
                changed += con.execute(f"UPDATE {table} SET {column} = substr(hex(randomblob(length({column}) / 2 + 1)), "
                                       f"1, length({column})) WHERE {where.format(t=table, k=k + 1)}").rowcount
            total = sum(con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("clients", "affiliations", "audit"))
            con.commit()
            con.close()
            _, out = run(montero(project, "backup", "sqlite", "--json"), env)
            new_id = json.loads(out)["id"]
            t2, out = run(montero(project, "backups", "push", new_id, "--json"), env)
            again = json.loads(out)[0]
            shutil.rmtree(project / "backups" / new_id)  # 1 GB each: only the first backup is kept
            added.append(again["bytes_added"])
            processed.append(again["bytes_processed"])
            seconds.append(t2)
            log(f"  {label}, run {k + 1}: {changed} rows, sent {again['bytes_added'] / 1e6:.1f} MB in {t2:.2f} s")
        med = statistics.median(added)
        rows.append(f"| second push after {label}: {changed} of {total} rows, median of {runs} | "
                    f"{med / 1e6:.1f} MB sent (range {min(added) / 1e6:.1f}-{max(added) / 1e6:.1f}) of "
                    f"{statistics.median(processed) / 1e6:.0f} MB in {statistics.median(seconds):.2f} s = "
                    f"{100 * med / first_sent:.1f}% of the first (target ≤ 5%) |")
    # Where push's extra time goes: the check that every file still has the SHA-256 that passed
    # integrity_check (the guarantee that only verified bytes leave), timed alone.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from montero_ops.services.offsite import unchanged_since_verified

    checks = []
    for _ in range(runs):
        start = time.perf_counter()
        _, problems = unchanged_since_verified(folder)
        checks.append(time.perf_counter() - start)
        assert not problems, problems
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"| figure | value |\n|---|---|\n"
          f"| backup size | {size / 1e6:.0f} MB (SQLite {args.size_mb} MB target) |\n"
          f"| `montero backups push` (fresh repository), median of {runs} | {statistics.median(ours):.2f} s |\n"
          f"| `restic init` + `restic backup` of the same folder, median of {runs} | {statistics.median(theirs):.2f} s |\n"
          f"| ratio push / plain restic | {ratio:.2f} (target ≤ 1.1) |\n"
          f"| of which: the size + SHA-256 check of the backup's files before sending, median of {runs} | "
          f"{statistics.median(checks):.2f} s |\n"
          f"| bytes sent by the first push | {first_sent / 1e6:.1f} MB |\n" + "\n".join(rows))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
