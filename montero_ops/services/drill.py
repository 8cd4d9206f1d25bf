"""Restore drills: prove a backup restores, without touching the running stack.

A drill puts a backup (local, or fetched from the offsite repository) into a throwaway compose
project: its own folder under .montero/, its own project name, loopback port and Redis volume,
the same images. It starts it, migrates to head, checks /health, compares every table's row
count with the manifest and every table's checksum with the backup's own file, logs in with a
temporary account and reads through the API; then removes the throwaway project whatever
happened. The evidence (backup, where it came from, seconds to restore and to healthy, each
check) is written to BACKUPS/.drills/ID.json, where `backups list` and `doctor` read it.

Compose runs as a subprocess with the throwaway ports in its environment: the shell's
environment wins over --env-file in compose, so a MONTERO_APP_PORTS exported for the real
stack could otherwise be taken by the drill.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops.errors import CommandFailed, MonteroError, UsageError
from montero_ops.project import Project
from montero_ops.services.backups import sqlite_db
from montero_ops.services.backups.manifest import Manifest, read_manifest
from montero_ops.services.wait import wait_until

if TYPE_CHECKING:
    from montero_ops.dockerapi import DockerAPI

Progress = Callable[[str], None]
DRILLS = ".drills"
HEALTH_TIMEOUT = 300.0
HEALTH_SETTLE = 30.0  # seconds /health may take to go from degraded to ok
STALE_DAYS = 8
APP_UID = 1000


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class DrillResult:
    backup: str
    source: str  # "local" | "offsite snapshot ID (repository)"
    started_at: str
    project: str  # the throwaway compose project
    ok: bool = False
    restore_seconds: float | None = None  # fetch (offsite) + data in place
    healthy_seconds: float | None = None  # from `up` to every container healthy
    recovery_seconds: float | None = None  # restore + healthy: the measured recovery time
    checks: list[Check] = field(default_factory=list)
    error: str | None = None
    cleaned_up: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Throwaway:
    """The drill's own compose project: a folder, a name, a loopback port."""

    def __init__(self, project: Project, folder: Path) -> None:
        self.source, self.root = project, folder
        self.name = f"{project.name}-drill-{secrets.token_hex(3)}"
        self.port = _free_port()
        shutil.copytree(project.root / "docker", folder / "docker",
                        ignore=shutil.ignore_patterns("certs", "__pycache__"))
        if project.env_file.is_file():
            shutil.copy2(project.env_file, folder / ".env")
        for name in ("data", "logs"):
            (folder / name).mkdir()
            if os.geteuid() == 0:
                os.chown(folder / name, APP_UID, APP_UID)
        self.env = {**os.environ, "COMPOSE_PROJECT_NAME": self.name, "MONTERO_APP_BIND": "127.0.0.1",
                    "MONTERO_APP_PORTS": str(self.port), "MONTERO_HTTP_PORT": str(_free_port()),
                    "MONTERO_HTTPS_PORT": str(_free_port())}

    def compose(self, *args: str, timeout: float = 600, extra_env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
        env_file = self.root / ".env"
        cmd = ["docker", "compose", "-p", self.name, "--project-directory", str(self.root),
               "-f", str(self.root / "docker" / "compose.yml"),
               "--env-file", str(env_file) if env_file.is_file() else os.devnull, *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                              env={**self.env, **(extra_env or {})}, cwd=self.root)
        if check and proc.returncode != 0:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
            raise CommandFailed(f"drill: docker compose {args[0]} failed: {lines[-1] if lines else 'exit ' + str(proc.returncode)}",
                                hint="is the app image built (`montero up` once)? see `montero doctor`")
        return proc

    def config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.compose("config", "--format", "json").stdout)
        return data

    def down(self) -> bool:
        proc = self.compose("down", "-v", "--remove-orphans", "--timeout", "5", timeout=180, check=False)
        return proc.returncode == 0


def _http(url: str, data: dict[str, Any] | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = json.dumps(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers, method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        try:
            return err.code, json.loads(err.read() or b"null")
        except ValueError:
            return err.code, None


def _db_relpath(manifest: Manifest) -> Path:
    source = str((manifest.sqlite or {}).get("source") or "data/mi_sistema.db")
    rel = Path(source)
    return rel if not rel.is_absolute() and rel.parts[:1] == ("data",) else Path("data") / rel.name


def _persistent_keys(keyspace: dict[str, str]) -> int:
    """Keys without a TTL in INFO keyspace ({'db0': 'keys=5,expires=2,avg_ttl=0'}); keys with a
    TTL may expire between backup and drill, so only these must match exactly."""
    total = 0
    for value in keyspace.values():
        fields = dict(part.split("=", 1) for part in str(value).split(",") if "=" in part)
        total += int(fields.get("keys", 0)) - int(fields.get("expires", 0))
    return total


def run_drill(project: Project, folder: Path, source: str, backups_dir: Path,
              progress: Progress = lambda _m: None, t0: float | None = None, *, docker: DockerAPI) -> DrillResult:
    """Drill one verified local backup folder (offsite: already fetched, t0 = when fetching began).
    DOCKER (the State's) waits for the throwaway stack's health."""
    from montero_ops.services.backups import verify_backup
    from montero_ops.services.backups.redis_data import RESTORE_SCRIPT
    from montero_ops.services.backups.restore import migrations
    from montero_ops.services.stack import wait_healthy

    t0 = time.monotonic() if t0 is None else t0
    manifest = read_manifest(folder)
    if "sqlite" not in manifest.contents:
        raise UsageError(f"backup {folder.name} holds no SQLite database ({'+'.join(manifest.contents)}): nothing to drill",
                         hint="drill a full backup (`montero backup`); PostgreSQL backups are not drilled yet")
    work = project.root / ".montero"
    work.mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="drill-", dir=work))
    stack = Throwaway(project, tmp)
    result = DrillResult(folder.name, source, _now(), stack.name)
    try:
        check = verify_backup(folder)
        if not result.check("verify", check.ok, "checksums, integrity_check, manifest" if check.ok else "; ".join(check.problems)):
            raise MonteroError(f"backup {folder.name} does not verify")
        progress(f"drill: throwaway project {stack.name} on 127.0.0.1:{stack.port}")
        stack.compose("up", "--no-start", "--no-build", "app", "redis")
        # SQLite: the backup's file, checked against its checksum, in the throwaway ./data.
        entry = manifest.file("sqlite")
        assert entry is not None and manifest.sqlite is not None
        target = tmp / _db_relpath(manifest)
        target.parent.mkdir(parents=True, exist_ok=True)
        staged = sqlite_db.stage_copy(folder / entry.name, target, entry.compression == "gzip",
                                      str(manifest.sqlite.get("uncompressed_sha256") or "") or None,
                                      str(manifest.sqlite.get("journal_mode") or "wal"))
        staged.rename(target)
        if os.geteuid() == 0:
            os.chown(target, APP_UID, APP_UID)
        if "redis" in manifest.contents:
            cfg = stack.config()
            redis = cfg["services"]["redis"]
            vol = next(m["source"] for m in redis.get("volumes", []) if m.get("target") == "/data")
            volume = str(cfg.get("volumes", {}).get(vol, {}).get("name") or vol)
            aof = appendonly(redis.get("command"))
            done = subprocess.run(
                ["docker", "run", "--rm", "--user", "0", "--entrypoint", "sh", "-v", f"{volume}:/data",
                 "-v", f"{folder / 'redis'}:/src:ro", "-e", "SRC=/src", "-e", "DATA=/data", "-e", "DBFILE=dump.rdb",
                 "-e", f"AOF={'yes' if aof else 'no'}", str(redis["image"]), "-c", RESTORE_SCRIPT],
                capture_output=True, text=True, timeout=600, check=False)
            if not result.check("redis.restore", done.returncode == 0, (done.stderr.strip().splitlines() or ["ok"])[-1]):
                raise MonteroError("drill: Redis data could not be put in the throwaway volume")
        _give_redis_its_volume(stack)
        result.restore_seconds = round(time.monotonic() - t0, 2)
        progress(f"drill: data in place after {result.restore_seconds:.1f} s; computing table checksums")
        expected = sqlite_db.table_checksums(target)
        t_up = time.monotonic()
        stack.compose("up", "-d", "--no-build", "app", "redis")
        wait_healthy(docker, stack.name, HEALTH_TIMEOUT)
        result.healthy_seconds = round(time.monotonic() - t_up, 2)
        result.recovery_seconds = round(result.restore_seconds + result.healthy_seconds, 2)
        progress(f"drill: healthy after {result.healthy_seconds:.1f} s (recovery time {result.recovery_seconds:.1f} s)")
        _checks(result, stack, manifest, target, expected, migrations(project))
    except MonteroError as exc:
        result.error = exc.message
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, StopIteration) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        progress(f"drill: removing {stack.name}")
        result.cleaned_up = stack.down()
        shutil.rmtree(tmp, ignore_errors=True)
    result.ok = result.error is None and all(c.ok for c in result.checks)
    record(backups_dir, result)
    return result


def appendonly(command: list[Any] | str | None) -> bool:
    """Whether the redis service's command turns AOF on. With AOF on Redis ignores dump.rdb and
    loads only the append-only files, so the restore must rebuild them from it. The command may be
    one shell line (`sh -c '… exec redis-server --appendonly yes …'`), not separate words."""
    text = command if isinstance(command, str) else " ".join(str(c) for c in command or [])
    return re.search(r"--appendonly\s+yes\b", text) is not None


def _give_redis_its_volume(stack: Throwaway) -> None:
    """Redis runs non-root (services/redis_volume.py): the throwaway volume, new or just filled
    by the root restore container, must be the redis user's before redis-server starts."""
    from montero_ops.services import redis_volume

    found = redis_volume.redis_volume(stack.config(), stack.name)
    if found is None:
        return
    done = subprocess.run(["docker", *redis_volume.chown_command(*found)], capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        line = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise MonteroError(f"drill: could not give the throwaway Redis volume to the redis user: {line}")


def _redis_auth(stack: Throwaway) -> dict[str, str]:
    """redis-cli's password (REDISCLI_AUTH) from the throwaway's .env, as the healthcheck does."""
    from montero_ops.services.envfile import parse_env

    env_file = stack.root / ".env"
    password = parse_env(env_file.read_text()).get("REDIS_PASSWORD") if env_file.is_file() else None
    return {"REDISCLI_AUTH": password} if password else {}


def _checks(result: DrillResult, stack: Throwaway, manifest: Manifest, db: Path, expected: dict[str, str],
            migs: Any) -> None:
    base = f"http://127.0.0.1:{stack.port}"
    # Migrate to head (the entrypoint already did; this proves it is idempotent and reachable).
    up = stack.compose("exec", "-T", "--workdir", "/app", "app", "alembic", "upgrade", "head", check=False)
    revision, counts = sqlite_db.stats(db)
    heads = sorted(migs.heads) if migs else []
    result.check("migrate", up.returncode == 0 and (not heads or revision in heads),
                 f"revision {revision} (head {', '.join(heads) or '?'})")
    # Healthy containers, but the app's first Redis ping may still time out on a loaded host
    # ("degraded", in-memory rate limits): give it a few seconds to say "ok" before failing.
    last: list[tuple[int, Any]] = []

    def settled() -> bool | None:
        last[:] = [_http(base + "/health")]
        status, body = last[0]
        return True if status == 200 and (body or {}).get("status") == "ok" else None

    wait_until(settled, HEALTH_SETTLE, 1.0)
    status, body = last[0]
    redis_ok = "redis" not in manifest.contents or (body or {}).get("redis", {}).get("status") == "ok"
    result.check("health", status == 200 and (body or {}).get("status") == "ok" and redis_ok,
                 f"/health {status} {(body or {}).get('status')}")
    want = dict((manifest.sqlite or {}).get("tables") or {})
    wrong = [f"{t}: {counts.get(t)} rows, manifest {n}" for t, n in want.items() if counts.get(t) != n]
    result.check("rows", not wrong, "; ".join(wrong) or f"{len(want)} tables, every row count equals the manifest")
    if revision == (manifest.sqlite or {}).get("revision"):
        got = sqlite_db.table_checksums(db)
        differ = [t for t in expected if got.get(t) != expected[t]]
        result.check("checksums", not differ,
                     f"differ: {', '.join(differ)}" if differ else f"{len(expected)} tables equal the backup's")
    else:
        result.check("checksums", True, f"migrated from {(manifest.sqlite or {}).get('revision')}: rows compared, "
                                        "checksums not (the schema changed)")
    if "redis" in manifest.contents:
        auth = _redis_auth(stack)
        # The password only in the exec's environment (-e NAME), never on a command line.
        asked = stack.compose("exec", "-T", *(["-e", "REDISCLI_AUTH"] if auth else []), "redis", "redis-cli", "INFO",
                              "keyspace", extra_env=auth, check=False)
        keyspace = {k: v for k, _, v in (ln.strip().partition(":") for ln in asked.stdout.splitlines())
                    if k.startswith("db")}
        want_keys = _persistent_keys(dict((manifest.redis or {}).get("keyspace_at_backup") or {}))
        got_keys = _persistent_keys(keyspace)
        said = " ".join((asked.stdout + asked.stderr).split())[:160]
        result.check("redis", got_keys == want_keys, f"{got_keys} keys without TTL (backup: {want_keys})"
                     + ("" if got_keys == want_keys else f"; redis-cli INFO keyspace exit {asked.returncode}: {said}"))
    # A temporary account (password only in the exec's environment, never on a command line).
    email, password = f"drill-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(18) + "aA1!"
    made = stack.compose("exec", "-T", "-e", "MONTERO_ADMIN_PASSWORD", "app", "flask", "--app", "wsgi",
                         "create-admin", "--email", email, extra_env={"MONTERO_ADMIN_PASSWORD": password}, check=False)
    status, body = _http(base + "/api/auth/login", {"email": email, "password": password})
    token = (body or {}).get("token") if status == 200 else None
    if not result.check("login", made.returncode == 0 and bool(token),
                        f"temporary account: create-admin exit {made.returncode}, login {status}"):
        return
    status, body = _http(base + "/api/clients", token=str(token))
    result.check("api", status == 200, f"GET /api/clients {status}")


# -- evidence --------------------------------------------------------------------------------------
def drills_dir(backups_dir: Path) -> Path:
    return backups_dir / DRILLS


def record(backups_dir: Path, result: DrillResult) -> Path:
    folder = drills_dir(backups_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{result.backup}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result.to_dict(), indent=2) + "\n")
    tmp.replace(path)
    with (folder / "history.jsonl").open("a") as fh:
        fh.write(json.dumps({k: v for k, v in result.to_dict().items() if k != "checks"}) + "\n")
    return path


def last_drill(backups_dir: Path, backup: str) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((drills_dir(backups_dir) / f"{backup}.json").read_text())
        return data
    except (OSError, ValueError):
        return None


def last_passed(backups_dir: Path) -> dict[str, Any] | None:
    """The most recent drill that passed, from the history (backups pruned since still count)."""
    best: dict[str, Any] | None = None
    try:
        lines = (drills_dir(backups_dir) / "history.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("ok") and (best is None or str(entry.get("started_at")) > str(best.get("started_at"))):
            best = entry
    return best


def forget(backups_dir: Path, backup: str) -> None:
    """A pruned backup's drill record goes with it (the history keeps the line)."""
    (drills_dir(backups_dir) / f"{backup}.json").unlink(missing_ok=True)
