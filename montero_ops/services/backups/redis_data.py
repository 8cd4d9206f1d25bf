"""Redis: a non-blocking snapshot (BGSAVE, wait for LASTSAVE to move) and a restore script.

Where Redis runs is behind `RedisSource`: in the compose stack (compose exec + docker cp)
or a local redis-server (tests, benchmarks). The restore is one POSIX sh script run
where the data directory is (a throwaway container on the named volume, or locally),
so the exact same steps are tested against a real redis-server.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from montero_ops.errors import CommandFailed
from montero_ops.services.wait import wait_until


class RedisSource(Protocol):
    def cli(self, *args: str) -> str:
        """Run one redis-cli command; its raw output."""

    def fetch(self, remote_path: str, dest: Path) -> None:
        """Copy a file or folder from Redis's data directory to dest."""


def config_get(source: RedisSource, name: str) -> str:
    lines = [ln for ln in source.cli("CONFIG", "GET", name).splitlines() if ln.strip()]
    return lines[1].strip() if len(lines) > 1 else ""


def persistence_mode(source: RedisSource) -> str:
    """'aof' (append-only file on; Redis loads it at start and ignores dump.rdb), 'rdb' or 'none'."""
    if config_get(source, "appendonly") == "yes":
        return "aof"
    return "rdb" if config_get(source, "save") else "none"


def _lastsave(source: RedisSource) -> int:
    out = source.cli("LASTSAVE").strip()
    try:
        return int(out.split()[-1])
    except (ValueError, IndexError) as exc:
        raise CommandFailed(f"redis LASTSAVE answered {out!r}") from exc


def _info(source: RedisSource, section: str) -> dict[str, str]:
    info = {}
    for line in source.cli("INFO", section).splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            info[key] = value
    return info


def bgsave(source: RedisSource, timeout: float = 300.0) -> int:
    """Snapshot without blocking clients (never SAVE); returns the new LASTSAVE.

    LASTSAVE has one-second resolution: wait for the next second first, so a save
    finishing in the same second as the previous one still moves it.
    """
    before = _lastsave(source)
    while int(time.time()) <= before:
        time.sleep(0.05)
    # SCHEDULE: when an AOF rewrite is running, queue the save instead of failing.
    answer = source.cli("BGSAVE", "SCHEDULE").strip()
    if "ERR" in answer and "already in progress" not in answer:
        raise CommandFailed(f"redis refused BGSAVE: {answer}")

    def saved() -> int | None:
        now = _lastsave(source)
        if now > before:
            return now
        info = _info(source, "persistence")
        if info.get("rdb_last_bgsave_status") == "err" and info.get("rdb_bgsave_in_progress") == "0":
            raise CommandFailed("redis BGSAVE failed (rdb_last_bgsave_status:err); see `montero logs redis`")
        return None

    done = wait_until(saved, timeout, 0.1)
    if done is None:
        raise CommandFailed(f"redis BGSAVE did not finish within {int(timeout)} s")
    return done


def snapshot(source: RedisSource, dest: Path) -> dict[str, object]:
    """BGSAVE, then copy dump.rdb (and appendonlydir when AOF is on) into dest."""
    mode = persistence_mode(source)
    data_dir = config_get(source, "dir") or "/data"
    dbfile = config_get(source, "dbfilename") or "dump.rdb"
    aof_dir = config_get(source, "appenddirname") or "appendonlydir"
    lastsave = bgsave(source)
    dest.mkdir(parents=True, exist_ok=True)
    source.fetch(f"{data_dir}/{dbfile}", dest / "dump.rdb")
    if mode == "aof":
        # Informational copy: restore rebuilds the AOF from dump.rdb, the consistent snapshot.
        source.fetch(f"{data_dir}/{aof_dir}", dest / "appendonlydir")
    keys = _info(source, "keyspace")
    return {"persistence": mode, "lastsave": lastsave, "dbfilename": dbfile, "keyspace_at_backup": keys}


def looks_like_rdb(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(5) == b"REDIS"


# Run with SRC (folder holding dump.rdb), DATA (Redis's data dir), DBFILE, AOF=yes|no, RAW=yes|no.
# Builds the new state in $DATA/.montero-restore, then swaps it in with renames.
# With AOF on, Redis 7 ignores dump.rdb when it starts, so the AOF is rebuilt from the
# snapshot by a temporary redis-server (appendonly off, then CONFIG SET appendonly yes).
# RAW=yes puts back a raw safety copy (files Redis could not load, e.g. a damaged AOF) exactly
# as they were: dump.rdb and appendonlydir when present, no redis-server involved.
RESTORE_SCRIPT = r"""
set -eu
STAGE="$DATA/.montero-restore"
OLD="$DATA/.montero-old"
rm -rf "$STAGE" "$OLD"
mkdir -p "$STAGE"
if [ "${RAW:-no}" = yes ]; then
  if [ -e "$SRC/dump.rdb" ]; then cp "$SRC/dump.rdb" "$STAGE/$DBFILE"; fi
  if [ -d "$SRC/appendonlydir" ]; then cp -r "$SRC/appendonlydir" "$STAGE/appendonlydir"; fi
  AOF=raw
else
  cp "$SRC/dump.rdb" "$STAGE/$DBFILE"
fi
if [ "$AOF" = yes ]; then
  SOCK="$STAGE/tmp.sock"
  redis-server --dir "$STAGE" --dbfilename "$DBFILE" --appendonly no --save "" --port 0 \
    --unixsocket "$SOCK" --daemonize yes --logfile "$STAGE/tmp.log" --pidfile "$STAGE/tmp.pid"
  i=0
  until redis-cli -s "$SOCK" ping 2>/dev/null | grep -q PONG; do
    i=$((i+1)); if [ $i -gt 600 ]; then echo "temporary redis-server did not start" >&2; cat "$STAGE/tmp.log" >&2; exit 1; fi
    sleep 0.1
  done
  redis-cli -s "$SOCK" config set appendonly yes >/dev/null
  i=0
  while :; do
    info=$(redis-cli -s "$SOCK" info persistence | tr -d '\r')
    if echo "$info" | grep -q '^aof_rewrite_in_progress:0' && echo "$info" | grep -q '^aof_rewrite_scheduled:0' \
       && ls "$STAGE"/appendonlydir/*.manifest >/dev/null 2>&1; then break; fi
    i=$((i+1)); if [ $i -gt 6000 ]; then echo "rebuilding the append-only file timed out" >&2; exit 1; fi
    sleep 0.1
  done
  echo "$info" | grep -q '^aof_last_bgrewrite_status:ok' || { echo "rebuilding the append-only file failed" >&2; exit 1; }
  redis-cli -s "$SOCK" shutdown nosave >/dev/null 2>&1 || true
  i=0
  while [ -e "$STAGE/tmp.pid" ] && kill -0 "$(cat "$STAGE/tmp.pid")" 2>/dev/null; do
    i=$((i+1)); [ $i -gt 300 ] && break; sleep 0.1
  done
  rm -f "$STAGE/tmp.sock" "$STAGE/tmp.log" "$STAGE/tmp.pid"
fi
chown -R "$(stat -c %u:%g "$DATA")" "$STAGE" 2>/dev/null || true
sync
mkdir -p "$OLD"
if [ -e "$DATA/$DBFILE" ]; then mv "$DATA/$DBFILE" "$OLD/"; fi
if [ -e "$DATA/appendonlydir" ]; then mv "$DATA/appendonlydir" "$OLD/"; fi
if [ -d "$STAGE/appendonlydir" ]; then mv "$STAGE/appendonlydir" "$DATA/appendonlydir"; fi
if [ -e "$STAGE/$DBFILE" ]; then mv "$STAGE/$DBFILE" "$DATA/$DBFILE"; fi
sync
rm -rf "$OLD" "$STAGE"
echo restored
"""


class LocalRedis:
    """A redis-server on this machine (tests, benchmarks, bare-metal installs)."""

    def __init__(self, port: int, host: str = "127.0.0.1", password: str | None = None) -> None:
        self.port, self.host, self.password = port, host, password

    def cli(self, *args: str) -> str:
        import os
        import subprocess

        env = dict(os.environ, **({"REDISCLI_AUTH": self.password} if self.password else {}))
        proc = subprocess.run(
            ["redis-cli", "-h", self.host, "-p", str(self.port), *args],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )
        if proc.returncode != 0:
            raise CommandFailed(f"redis-cli {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def fetch(self, remote_path: str, dest: Path) -> None:
        import shutil

        src = Path(remote_path)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)


def restore_local(src: Path, data_dir: Path, aof: bool, dbfile: str = "dump.rdb", raw: bool = False) -> str:
    """Run RESTORE_SCRIPT against a local data dir (Redis must be stopped)."""
    import os
    import subprocess

    env = dict(os.environ, SRC=str(src), DATA=str(data_dir), DBFILE=dbfile, AOF="yes" if aof else "no",
               RAW="yes" if raw else "no")
    proc = subprocess.run(["sh", "-c", RESTORE_SCRIPT], capture_output=True, text=True, env=env, timeout=900,
                          check=False)
    if proc.returncode != 0:
        raise CommandFailed(f"restoring Redis files failed: {proc.stderr.strip().splitlines()[-1:] or proc.returncode}")
    return proc.stdout
