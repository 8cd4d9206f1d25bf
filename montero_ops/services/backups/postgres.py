"""PostgreSQL backups (profile `postgres`) with the SQLite backups' guarantees.

- backup: `pg_dump -Fc` inside the postgres container (client and server versions match),
  streamed to the backup folder. The dump is then restored into a scratch database, whose
  Alembic revision and row count per table go into the manifest: the backup counts only
  once it has been proven to restore (the `integrity_check` of the SQLite path).
- verify: checksums and sizes (the shared manifest), then the same scratch restore, whose
  counts and revision must match the manifest.
- restore: verify first; a safety backup of the current database; the app stopped; the dump
  restored into a new database; then both names swapped in ONE transaction (ALTER DATABASE
  … RENAME is transactional), so the live name points at either the old or the new data,
  never a mix. Any failure before the swap leaves the old database untouched; the app is
  started again and waited for either way.
The folder layout and manifest are the backups module's (montero_ops/services/backups):
files `postgres.dump` (role postgres-dump) and `postgres.json` (role postgres-meta).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops import __version__
from montero_ops.errors import CommandFailed, UsageError
from montero_ops.project import Project
from montero_ops.services.wait import wait_until

if TYPE_CHECKING:
    from python_on_whales import DockerClient
    from python_on_whales import Task as TaskModel

    from montero_ops.dockerapi import DockerAPI

DUMP_NAME, META_NAME = "postgres.dump", "postgres.json"
Progress = Callable[[str], None]
_COUNTS_SQL = """
SELECT coalesce(json_object_agg(t.table_name, (xpath('/row/c/text()',
       query_to_xml(format('select count(*) as c from %I.%I', t.table_schema, t.table_name), false, true, '')))[1]
       ::text::bigint), '{}'::json)
FROM information_schema.tables t WHERE t.table_schema = 'public' AND t.table_type = 'BASE TABLE'
"""


@dataclass
class PgTarget:
    project: Project  # the variant with the postgres profile (its compose files)
    user: str
    database: str
    stack: str | None = None  # a swarm stack: the tools run in a one-off container on its network
    image: str = ""
    password: str = ""
    swarm: DockerClient | None = None  # with a stack: the State's docker-only client, for typed reads


def target(project: Project, stack: str | None = None, swarm: DockerClient | None = None) -> PgTarget:
    """What the tools run against. With STACK, SWARM is the caller's docker-only client
    (`State.plain_client()`): the stack's services are read through it."""
    from montero_ops.services.backups.sqlite_db import read_env_file
    from montero_ops.services.stack import POSTGRES_PROFILE, with_profiles

    env = read_env_file(project.env_file) if project.env_file.is_file() else {}
    user = env.get("POSTGRES_USER") or "montero"
    t = PgTarget(with_profiles(project, [POSTGRES_PROFILE]), user, env.get("POSTGRES_DB") or user)
    if stack:
        t.stack, t.password, t.swarm = stack, env.get("POSTGRES_PASSWORD", ""), _need_swarm(swarm, stack)
        t.image = _swarm_image(t.swarm, stack)
    return t


def _need_swarm(swarm: DockerClient | None, stack: str) -> DockerClient:
    if swarm is None:
        raise TypeError(f"stack {stack}: pass the docker-only client (State.plain_client()) as swarm")
    return swarm


def _swarm_image(client: DockerClient, stack: str) -> str:
    """The image (by digest) the stack's postgres service runs: its pg_dump matches the server.

    From the typed model (`client.service.inspect`), on a docker-only client: DOCKER_HOST
    and --context reach it through the environment, as for every docker command here."""
    from python_on_whales.exceptions import DockerException

    try:
        spec = client.service.inspect(f"{stack}_postgres").spec
    except DockerException:
        spec = None
    template = spec.task_template if spec else None
    image = template.container_spec.image if template and template.container_spec else None
    if not image or not image.strip():
        raise CommandFailed(f"stack {stack} has no postgres service on this swarm",
                            hint="deploy it with `montero swarm deploy --profile postgres`; point montero at a "
                                 "manager (DOCKER_HOST or --context)")
    return image.strip()


def _command(t: PgTarget, args: list[str], service: str) -> tuple[list[str], dict[str, str] | None]:
    """One host: `compose exec` in the container. A swarm: the server may be on any node, so
    the tool runs in a one-off container on the manager, on the stack's (attachable) network,
    and reaches `postgres` by its service name. The password travels in the environment of
    that process only (`-e PGPASSWORD` names it, never a command line)."""
    from montero_ops.client import DEFAULT_CLIENT_CALL, compose_base_cmd

    if t.stack is None:
        return compose_base_cmd(t.project) + ["exec", "-T", service, *args], None
    import os

    cmd = [*DEFAULT_CLIENT_CALL, "run", "--rm", "-i", "--log-driver", "none", "--no-healthcheck",
           "--network", f"{t.stack}_default", "-e", "PGPASSWORD", "--entrypoint", args[0], t.image,
           "-h", "postgres", *args[1:]]
    return cmd, {**os.environ, "PGPASSWORD": t.password}


def _exec(t: PgTarget, args: list[str], stdin: Any = None, stdout: Any = subprocess.PIPE,
          service: str = "postgres") -> subprocess.CompletedProcess[bytes]:
    cmd, env = _command(t, args, service)
    done = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, check=False, env=env)
    if done.returncode != 0:
        err = done.stderr.decode(errors="replace").strip().splitlines()
        where = f"stack {t.stack}" if t.stack else service
        raise CommandFailed(f"`{' '.join(args[:2])}` in {where} failed: {err[-1] if err else done.returncode}",
                            hint="is the stack up with `--profile postgres`? (`montero ps`, or "
                                 "`montero swarm status` on a swarm)")
    return done


def _psql(t: PgTarget, sql: str, database: str | None = None) -> str:
    args = ["psql", "-v", "ON_ERROR_STOP=1", "-X", "-At", "-U", t.user, "-d", database or t.database, "-c", sql]
    return _exec(t, args).stdout.decode().strip()


def _scratch_stats(t: PgTarget, dump: Path) -> dict[str, Any]:
    """Restore `dump` into a throwaway database: revision and row counts, or CommandFailed."""
    scratch = f"montero_check_{secrets.token_hex(4)}"
    _psql(t, f'CREATE DATABASE "{scratch}"', "postgres")
    try:
        with dump.open("rb") as fh:
            _exec(t, ["pg_restore", "--no-owner", "--exit-on-error", "-U", t.user, "-d", scratch], stdin=fh)
        revision = _psql(t, "SELECT version_num FROM alembic_version", scratch) or None
        return {"revision": revision, "tables": json.loads(_psql(t, _COUNTS_SQL, scratch) or "{}")}
    finally:
        _psql(t, f'DROP DATABASE IF EXISTS "{scratch}"', "postgres")


def create(project: Project, backups_dir: Path, label: str = "manual",
           progress: Progress = lambda _m: None, stack: str | None = None,
           swarm: DockerClient | None = None) -> tuple[Path, Any]:
    from montero_ops.services.backups.manifest import (
        FileEntry,
        Manifest,
        backup_id,
        sha256_file,
        utc_now,
        write_manifest,
    )

    t = target(project, stack, swarm)
    backups_dir.mkdir(parents=True, exist_ok=True)
    when = utc_now()
    work = backups_dir / f".tmp-pg-{secrets.token_hex(4)}"
    work.mkdir()
    try:
        progress(f"pg_dump of {t.database}")
        with (work / DUMP_NAME).open("wb") as fh:
            _exec(t, ["pg_dump", "-Fc", "-U", t.user, "-d", t.database], stdout=fh)
        progress("restoring the dump into a scratch database to prove it")
        meta = {"format": "pg_dump custom", "database": t.database, **_scratch_stats(t, work / DUMP_NAME),
                "server_version": _psql(t, "SHOW server_version")}
        (work / META_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        files = [FileEntry(name, role, (work / name).stat().st_size, sha256_file(work / name))
                 for name, role in ((DUMP_NAME, "postgres-dump"), (META_NAME, "postgres-meta"))]
        manifest = Manifest(id="", created_at=when.isoformat().replace("+00:00", "Z"), montero_version=__version__,
                            project=project.name, contents=["postgres"], files=files, label=label)
        final = backups_dir / backup_id(when, project.name, ["postgres"])
        n = 1
        while final.exists():
            n += 1
            final = backups_dir / f"{backup_id(when, project.name, ['postgres'])}-{n}"
        manifest.id = final.name
        write_manifest(work, manifest)
        work.rename(final)
        return final, manifest
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


def verify(project: Project, folder: Path, stack: str | None = None,
           swarm: DockerClient | None = None) -> dict[str, Any]:
    """Checksums (shared manifest), then a scratch restore matching the recorded counts and revision."""
    from montero_ops.services.backups.verify import check_backup

    manifest = check_backup(folder)
    if "postgres" not in manifest.contents:
        raise UsageError(f"backup {folder.name} holds no PostgreSQL dump", hint="see `montero backups list`")
    meta: dict[str, Any] = json.loads((folder / META_NAME).read_text())
    stats = _scratch_stats(target(project, stack, swarm), folder / DUMP_NAME)
    if stats["tables"] != meta["tables"] or stats["revision"] != meta["revision"]:
        raise UsageError(f"backup {folder.name}: the dump's rows or revision differ from its manifest")
    return meta


def restore(project: Project, folder: Path, backups_dir: Path, progress: Progress = lambda _m: None,
            timeout: float = 180, stack: str | None = None, *, docker: DockerAPI,
            swarm: DockerClient | None = None) -> Path:
    """Returns the safety backup's folder. The live database is swapped atomically.
    DOCKER (the State's) reads the app's health after a compose restart; on a STACK, SWARM
    (the State's docker-only client) reads its services and tasks."""
    t = target(project, stack, swarm)
    progress(f"verifying {folder.name}")
    verify(project, folder, stack, swarm)
    progress("taking a safety backup of the current database")
    safety, _ = create(project, backups_dir, label="safety", progress=progress, stack=stack, swarm=swarm)
    staged = f"montero_restore_{secrets.token_hex(4)}"
    old = f"{t.database}_before_{secrets.token_hex(4)}"
    progress("stopping the app")
    start_app = _stop_app(t, docker)
    try:
        _psql(t, f'CREATE DATABASE "{staged}"', "postgres")
        with (folder / DUMP_NAME).open("rb") as fh:
            _exec(t, ["pg_restore", "--no-owner", "--exit-on-error", "-U", t.user, "-d", staged], stdin=fh)
        progress("swapping the restored database in (one transaction)")
        _psql(t, f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{t.database}' "
                 "AND pid <> pg_backend_pid()", "postgres")
        _psql(t, f'BEGIN; ALTER DATABASE "{t.database}" RENAME TO "{old}"; '
                 f'ALTER DATABASE "{staged}" RENAME TO "{t.database}"; COMMIT;', "postgres")
        _psql(t, f'DROP DATABASE IF EXISTS "{old}"', "postgres")
    except BaseException:
        _psql(t, f'DROP DATABASE IF EXISTS "{staged}"', "postgres")
        raise
    finally:
        progress("starting the app")
        start_app(timeout)
    return safety


def _stop_app(t: PgTarget, engine: DockerAPI) -> Callable[[float], None]:
    """Stop the app; returns what starts it again (and waits until it is healthy)."""
    from montero_ops.client import DEFAULT_CLIENT_CALL, compose_base_cmd

    if t.stack is None:
        base = compose_base_cmd(t.project)
        subprocess.run(base + ["stop", "app"], capture_output=True, check=False)

        def start(timeout: float) -> None:
            started = subprocess.run(base + ["start", "app"], capture_output=True, text=True, check=False)
            if started.returncode != 0:
                raise CommandFailed("the app did not start again: " + (started.stderr.strip().splitlines() or ["?"])[-1],
                                    hint="`montero up --profile postgres`; the database itself is consistent")
            _wait_app(t.project, timeout, engine)
        return start
    # A swarm: scale the app to 0 (its tasks on every node stop), then back to what it was.
    from python_on_whales.exceptions import DockerException

    service = f"{t.stack}_app"
    docker = [*DEFAULT_CLIENT_CALL, "service"]
    client = _need_swarm(t.swarm, t.stack)  # typed reads; DOCKER_HOST and --context from the environment
    try:
        mode = client.service.inspect(service).spec.mode or {}
    except DockerException:
        mode = {}
    shown = (mode.get("Replicated") or {}).get("Replicas")
    replicas = str(shown) if isinstance(shown, int) else "1"
    subprocess.run(docker + ["scale", "--detach", f"{service}=0"], capture_output=True, check=False)

    def start_swarm(timeout: float) -> None:
        scaled = subprocess.run(docker + ["scale", "--detach", f"{service}={replicas}"], capture_output=True,
                                text=True, check=False)
        if scaled.returncode != 0:
            raise CommandFailed(f"{service} did not scale back to {replicas}: "
                                + (scaled.stderr.strip().splitlines() or ["?"])[-1],
                                hint=f"`docker service scale {service}={replicas}`; the database itself is consistent")
        def back() -> bool | None:
            # Tasks, not `service ls`'s counter: right after the scale that may still show the old 6/6.
            try:
                running = sum(1 for task in client.service.ps(service) if _running(task))
            except DockerException:
                return None
            return running == int(replicas) or None

        if wait_until(back, timeout, 2.0) is None:
                raise CommandFailed(f"{service} is not back at {replicas} healthy replicas after {timeout:g}s",
                                hint=f"`montero doctor --swarm --stack {t.stack}`; the database itself is consistent")
    return start_swarm


def _running(task: TaskModel) -> bool:
    """A task meant to run that runs (its desired state and status read together: one inspect)."""
    desired, status = task.desired_state, task.status
    return desired == "running" and status is not None and status.state == "running"


def _wait_app(project: Project, timeout: float, engine: DockerAPI) -> None:
    from montero_ops.services.rolling import replicas, wait_healthy

    for container in replicas(engine, project.name, "app", running_only=False):
        wait_healthy(engine, container["Id"], timeout)
