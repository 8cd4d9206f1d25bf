"""`montero deploy` and `montero rollback` on one host: build, gate, switch, prove, record.

deploy:
  1. build the app image under an immutable tag (`<repo>:<release id>`), record the release;
  2. migration gate: a verified backup, then the new image's migrations on a copy of it in a
     one-off container (no network). A failure stops here: nothing running was touched. A
     migration that drops a table or a column (or renames one: the old name disappears) would
     break the old release during the switch and is refused unless --allow-breaking;
  3. the real migration, once, in a one-off container under the entrypoint's database lock;
  4. the switch: the configured tag (MONTERO_APP_IMAGE) moves to the release and the replicas are
     replaced one at a time (services/rolling.py, nginx pinned to healthy replicas only), while
     montero's own probe stream (services/probe.py) measures the switch;
  5. any new replica failing its health gate, or any probe failing, returns every replica to the
     previous release's image and raises DeployFailed with the "why it failed" bundle, which is
     also saved with the release record.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops.dockerapi import DockerAPI
from montero_ops.errors import CommandFailed, MonteroError, StackNotRunning, UsageError
from montero_ops.project import Project
from montero_ops.services import releases as rel
from montero_ops.services.probe import ProbeStream, ProbeTarget, probe_token
from montero_ops.services.rolling import ReplicaFailed, _nginx, replicas, rolling_restart

if TYPE_CHECKING:
    from python_on_whales import DockerClient

Progress = Callable[[str], None]
SERVICE = "app"
GATE_TIMEOUT_S = 600
APP_UID = 1000


class DeployFailed(MonteroError):
    """The switch failed and the stack is back on the previous release (exit 1)."""

    def __init__(self, message: str, hint: str | None, release: rel.Release) -> None:
        super().__init__(message, hint=hint)
        self.release = release


class ProbeFailed(MonteroError):
    """The deploy's probe stream saw a 5xx or a connection error."""


@dataclass
class Outcome:
    release: rel.Release
    previous: str | None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.release.to_dict(), "previous": self.previous, "notes": self.notes}


# ------------------------------------------------------------------ what runs now


def needs_production(engine: DockerAPI, project: Project) -> bool:
    """True when no nginx runs: replicas are reached directly, so a switch has a short gap."""
    return _nginx(engine, project.name) is None


def running_image(engine: DockerAPI, project: Project) -> str:
    """The image id every app replica runs (the newest one's, if they differ)."""
    found = replicas(engine, project.name, SERVICE)
    if not found:
        raise StackNotRunning(SERVICE)
    return str(engine.inspect(found[-1]["Id"]).get("Image", ""))


def image_id(engine: DockerAPI, image: str) -> str:
    inspected = engine.image_inspect(image)
    if not inspected:
        raise MonteroError(f"image {image} does not exist", hint="it may have been removed by hand; deploy again")
    return str(inspected["Id"])


def adopt_running(history: rel.History, engine: DockerAPI, client: DockerClient, project: Project,
                  configured: str, progress: Progress) -> rel.Release:
    """Before the first deploy (or after `up --build` outside montero): what runs becomes a release."""
    digest = running_image(engine, project)
    current = history.current_release()
    if current and current.digest == digest:
        return current
    when = rel.utc_now()
    release_id = rel.new_release_id("adopted", when, {r.id for r in history.releases})
    tag = rel.release_tag(configured, release_id)
    client.image.tag(digest, tag)
    release = rel.Release(id=release_id, image=tag, digest=digest, commit=None, created_at=rel.iso(when),
                          by=rel.deployer(), kind="adopted", outcome="ok", revision=live_revision(project),
                          reason="the image that was running before montero recorded releases")
    history.releases.append(release)
    history.current = release.id
    rel.save_history(history)
    progress(f"recorded the running image as release {release_id} (to roll back to)")
    return release


# ------------------------------------------------------------------ build


def build_release(client: DockerClient, project: Project, tag: str, progress: Progress) -> None:
    from montero_ops.services.dockercmd import compose_cmd

    progress(f"building {tag}")
    env = {**os.environ, "MONTERO_APP_IMAGE": tag, "DOCKER_BUILDKIT": "1"}
    done = subprocess.run([*compose_cmd(client), "build", SERVICE], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        tail = [ln for ln in (done.stdout + done.stderr).splitlines() if ln.strip()][-5:]
        raise CommandFailed("building the new release failed: " + " | ".join(tail)[-600:],
                            hint="fix the build (`montero build app` shows all of it); nothing was changed")


# ------------------------------------------------------------------ migration gate


def live_revision(project: Project) -> str | None:
    """The database's alembic revision, read from the SQLite file (None: no file or PostgreSQL)."""
    try:
        from montero_ops.services.backups.sqlite_db import database_path

        db = database_path(project)
    except MonteroError:
        return None
    return sqlite_revision(db)


def sqlite_revision(db: Path) -> str | None:
    if not db.is_file():
        return None
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def schema(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
        tables = [r[0] for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
        return {t: [c[1] for c in con.execute(f'PRAGMA table_info("{t}")')] for t in tables}


def destructive_changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> list[str]:
    """What the old release would miss: dropped tables, dropped or renamed columns."""
    found: list[str] = []
    for table, columns in before.items():
        if table == "alembic_version":
            continue
        if table not in after:
            found.append(f"table {table} is dropped (or renamed)")
            continue
        found += [f"column {table}.{c} is dropped (or renamed)" for c in columns if c not in after[table]]
    return found


@dataclass
class Gate:
    backup: str | None
    revision_before: str | None
    revision_after: str | None
    destructive: list[str]
    skipped: str | None = None


def migration_gate(project: Project, tag: str, progress: Progress) -> Gate:
    from montero_ops.services.backups import create_backup, verify_backup
    from montero_ops.services.backups.sqlite_db import database_path
    from montero_ops.services.backups.stack import NoStack

    try:
        db = database_path(project)
    except MonteroError as exc:
        return Gate(None, None, None, [], skipped=f"no migration gate: {exc.message}")
    before = sqlite_revision(db)
    if not db.is_file():
        return Gate(None, None, None, [], skipped=f"no database at {db} yet: the first replica creates it")
    progress("verified backup of the database before the migrations")
    folder, manifest = create_backup(project, "sqlite", NoStack(), project.backups_dir, label="pre-deploy",
                                     progress=progress)
    verified = verify_backup(folder)
    if not verified.ok:
        raise MonteroError(f"the pre-deploy backup {manifest.id} does not verify: {'; '.join(verified.problems)}",
                           hint="nothing was changed; check the disk and `montero backups verify`")
    entry = manifest.file("sqlite")
    if entry is None:
        raise MonteroError(f"the pre-deploy backup {manifest.id} holds no database")
    work = project.root / rel.HISTORY_DIR / f"gate-{manifest.id}"
    work.mkdir(parents=True, exist_ok=True)
    try:
        copy = work / db.name
        source = folder / entry.name
        if entry.compression == "gzip":
            from montero_ops.services.backups.sqlite_db import gunzip_file

            gunzip_file(source, copy)
        else:
            shutil.copy2(source, copy)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            for path in (work, copy):
                os.chown(path, APP_UID, APP_UID)
        else:
            work.chmod(0o777)
            copy.chmod(0o666)
        shape = schema(copy)
        progress("running the new release's migrations on a copy of that backup")
        try:
            run_migrations_on_copy(tag, work, db.name)
        except MigrationFailed as exc:
            exc.backup = manifest.id
            raise
        after_revision = sqlite_revision(copy)
        destructive = destructive_changes(shape, schema(copy))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Gate(manifest.id, before, after_revision, destructive)


def run_migrations_on_copy(tag: str, folder: Path, db_name: str) -> None:
    """`alembic upgrade head` of the new image on the copy: a one-off container, no network."""
    cmd = ["docker", "run", "--rm", "--network", "none", "--user", f"{APP_UID}:{APP_UID}",
           "-v", f"{folder}:/app/data", "-e", f"DATABASE_URL=sqlite:////app/data/{db_name}",
           "--entrypoint", "alembic", tag, "upgrade", "head"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=GATE_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MigrationFailed(f"the new release's migrations did not finish in {GATE_TIMEOUT_S}s on the copy") \
            from exc
    if done.returncode != 0:
        raise MigrationFailed("the new release's migrations failed on a copy of the database: "
                              + migration_error(done.stderr + done.stdout, done.returncode))


class MigrationFailed(MonteroError):
    def __init__(self, message: str, backup: str | None = None) -> None:
        super().__init__(message, hint="fix the migration and deploy again; nothing running was touched")
        self.backup = backup  # the verified pre-deploy backup, recorded with the failed release


def migrate_for_real(client: DockerClient, tag: str, progress: Progress) -> None:
    """Once, before the switch, under the entrypoint's lock (the replicas then find the schema at head)."""
    from montero_ops.services.dockercmd import compose_cmd

    progress("migrating the database once, before the switch")
    cmd = [*compose_cmd(client), "run", "--rm", "--no-deps", "-T", "--entrypoint", "sh", SERVICE, "-c",
           'flock -w "${MIGRATE_LOCK_TIMEOUT:-300}" /app/data/.migrate.lock alembic upgrade head']
    done = subprocess.run(cmd, env={**os.environ, "MONTERO_APP_IMAGE": tag}, capture_output=True, text=True,
                          timeout=GATE_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise MigrationFailed("the migration failed on the live database (it passed on the copy): "
                              + migration_error(done.stderr + done.stdout, done.returncode))


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Failed|Failure)\b.*")


def migration_error(output: str, code: int) -> str:
    """The line that says why alembic failed: its exception line, not SQLAlchemy's closing
    '(Background on this error at: …)' link, which is all the CI's first failure showed."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    meaningful = [ln for ln in lines if not ln.startswith("(Background on this error")]
    exceptions = [ln for ln in meaningful if _EXCEPTION_LINE.match(ln)]
    chosen = exceptions[-1] if exceptions else (meaningful[-1] if meaningful else f"exit {code}")
    return chosen[:400]


# ------------------------------------------------------------------ the switch


def probe_target(engine: DockerAPI, project: Project) -> ProbeTarget | None:
    """nginx's published port on this host: HTTPS when HTTP redirects there."""
    proxy = _nginx(engine, project.name)
    if not proxy:
        return None
    ports = engine.inspect(proxy).get("NetworkSettings", {}).get("Ports") or {}

    def host_port(private: str) -> int | None:
        bound = ports.get(private) or []
        return int(bound[0]["HostPort"]) if bound and bound[0].get("HostPort") else None

    return probe_at(host_port("80/tcp"), host_port("443/tcp"))


def probe_at(http_port: int | None, https_port: int | None) -> ProbeTarget | None:
    """nginx on this machine's loopback (a host's compose nginx, or a swarm's host-mode one):
    HTTPS when HTTP redirects there."""
    token = probe_token()
    if http_port:
        import http.client

        try:
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            conn.request("GET", "/health")
            status = conn.getresponse().status
            conn.close()
        except OSError:
            status = 0
        if status not in (301, 302, 307, 308):
            return ProbeTarget("127.0.0.1", http_port, False, token)
    return ProbeTarget("127.0.0.1", https_port, True, token) if https_port else None


@dataclass
class Switch:
    replaced: int
    probe: ProbeStream | None
    duration_s: float


def switch(client: DockerClient, engine: DockerAPI, project: Project, configured: str, to_image: str,
           timeout: float, progress: Progress, probe_target_: ProbeTarget | None,
           only: set[str] | None = None, probe: ProbeStream | None = None) -> Switch:
    """Move the configured tag to `to_image` and replace the replicas one at a time."""
    started = time.monotonic()
    client.image.tag(to_image, configured)

    def check() -> None:
        if probe and probe.failed:
            raise ProbeFailed(f"the deploy's probe saw an error through nginx: {probe.first_error}")

    result = rolling_restart(client, project, SERVICE, timeout=timeout, progress=progress, engine=engine,
                             check=check if probe else None, only=only)
    return Switch(len(result.replaced), probe, time.monotonic() - started)


def receipt_of(sw: Switch | None, probe: ProbeStream | None, duration: float, gate: Gate | None,
               revision_after: str | None) -> rel.Receipt:
    return rel.Receipt(
        duration_s=round(duration, 1), replicas_replaced=sw.replaced if sw else 0,
        probes_sent=probe.sent if probe else 0, probes_failed=probe.failed if probe else 0,
        reconnects=probe.reconnects if probe else 0,
        p50_ms=probe.percentile(50) if probe else None, p99_ms=probe.percentile(99) if probe else None,
        first_error=probe.first_error if probe else None, backup=gate.backup if gate else None,
        revision_before=gate.revision_before if gate else None, revision_after=revision_after,
    )


# ------------------------------------------------------------------ deploy


def deploy(client: DockerClient, engine: DockerAPI, project: Project, allow_breaking: bool = False,
           timeout: float = 180.0, progress: Progress = lambda _m: None,
           after_build: Callable[[str], None] | None = None) -> Outcome:
    """`after_build(tag)` runs once the release image exists, before anything else (update's scan);
    it may raise to stop the deploy with nothing running touched."""
    started = time.monotonic()
    history = rel.load_history(project)
    keep = rel.keep_count(project)
    configured = rel.configured_image(project)
    previous = adopt_running(history, engine, client, project, configured, progress)

    when = rel.utc_now()
    commit = rel.git_commit(project.root)
    release_id = rel.new_release_id(commit, when, {r.id for r in history.releases})
    tag = rel.release_tag(configured, release_id)
    build_release(client, project, tag, progress)
    release = rel.Release(id=release_id, image=tag, digest=image_id(engine, tag), commit=commit,
                          created_at=rel.iso(when), by=rel.deployer())
    history.releases.append(release)
    rel.save_history(history)
    progress(f"release {release_id} built ({release.digest[7:19]})")

    gate: Gate | None = None
    try:
        if after_build:
            after_build(tag)
        gate = migration_gate(project, tag, progress)
        if gate.skipped:
            progress(gate.skipped)
        if gate.destructive and not allow_breaking:
            raise UsageError(
                "the new release's migrations would break the running release during the switch: "
                + "; ".join(gate.destructive),
                hint="split it (expand now, contract in a later release: docs/releases.md), "
                     "or pass --allow-breaking to accept errors from old replicas during the switch",
            )
        release.revision = gate.revision_after
        if gate.destructive:
            return _maintenance_deploy(client, engine, project, history, release, previous, configured, gate,
                                       started, keep, timeout, progress)
        if gate.revision_after and gate.revision_after != gate.revision_before:
            migrate_for_real(client, tag, progress)
    except MonteroError as exc:
        release.outcome, release.reason = "failed", exc.message
        if gate is None:  # the gate itself failed: what it had done is still worth recording
            gate = Gate(getattr(exc, "backup", None), live_revision(project), None, [])
        release.receipt = receipt_of(None, None, time.monotonic() - started, gate, gate.revision_before)
        rel.save_history(history)
        raise
    schema_moved = bool(gate.revision_after and gate.revision_after != gate.revision_before)

    target = probe_target(engine, project)
    probe = ProbeStream(target).start() if target else None
    sw: Switch | None = None
    try:
        sw = switch(client, engine, project, configured, tag, timeout, progress, target, probe=probe)
    except (MonteroError, Exception) as exc:
        failure = _bundle(exc, probe)
        progress(f"the switch failed ({failure['reason']}); returning every replica to {previous.id}")
        back = _return_to(client, engine, project, configured, previous, release, timeout, progress)
        if probe:
            probe.stop()
        release.outcome = "rolled-back"
        release.reason = failure["reason"]
        release.failure = {**failure, "returned_to": previous.id, "returned": back}
        release.receipt = receipt_of(sw, probe, time.monotonic() - started, gate, gate.revision_after)
        history.current = previous.id
        rel.save_history(history)
        data = (f"the database schema moved to {gate.revision_after} (from {gate.revision_before}); the old "
                f"release runs on it; `montero rollback --with-data` restores backup {gate.backup}"
                if schema_moved else "the database schema did not change")
        raise DeployFailed(f"deploy of {release_id} failed and was rolled back to {previous.id}: "
                           f"{failure['reason']}", hint=data, release=release) from exc
    if probe:
        probe.stop()
    release.outcome = "ok"
    release.receipt = receipt_of(sw, probe, time.monotonic() - started, gate, gate.revision_after)
    history.current = release.id
    notes = _prune(client, engine, project, history, keep)
    rel.save_history(history)
    if target is None:
        notes.append("no nginx: the probe stream and the zero-downtime switch need the production profile")
    return Outcome(release, previous.id, notes)


def _maintenance_deploy(client: DockerClient, engine: DockerAPI, project: Project, history: rel.History,
                        release: rel.Release, previous: rel.Release, configured: str, gate: Gate, started: float,
                        keep: int, timeout: float, progress: Progress) -> Outcome:
    """--allow-breaking with a destructive migration: no old replica may run on the new schema,
    so every replica stops, the migration runs once, and the new release starts (a short window
    in which nginx answers 502). Announced before it starts; the receipt counts the window."""
    count = len(replicas(engine, project.name, SERVICE))
    progress(f"MAINTENANCE WINDOW: stopping all {count} app replica(s) for a breaking migration "
             f"({'; '.join(gate.destructive)})")
    target = probe_target(engine, project)
    probe = ProbeStream(target).start() if target else None
    window = time.monotonic()
    client.compose.stop([SERVICE])
    try:
        migrate_for_real(client, release.image, progress)
    except MonteroError:
        progress(f"the migration failed: starting {previous.id} again")
        client.compose.start([SERVICE])
        if probe:
            probe.stop()
        raise
    client.image.tag(release.image, configured)
    client.compose.up(services=[SERVICE], scales={SERVICE: count}, force_recreate=True, dependencies=False,
                      detach=True, no_build=True, wait=True, wait_timeout=int(timeout), quiet=True)
    progress(f"maintenance window over after {time.monotonic() - window:.1f}s: {release.id} serves")
    if probe:
        probe.stop()
    release.outcome = "ok"
    release.receipt = receipt_of(Switch(count, probe, time.monotonic() - window), probe,
                                 time.monotonic() - started, gate, gate.revision_after)
    history.current = release.id
    window_s = time.monotonic() - window
    window_note = (f"--allow-breaking: a {window_s:.0f}s maintenance window replaced every replica (probe "
                   "failures during it are expected)")
    notes = [window_note]
    notes += _prune(client, engine, project, history, keep)
    rel.save_history(history)
    return Outcome(release, previous.id, notes)


def _bundle(exc: BaseException, probe: ProbeStream | None) -> dict[str, Any]:
    """Why it failed: the reason, the failing replica's last log lines and health output, the probe's error."""
    from montero_ops.services.stack import FailureReport

    reason = exc.message if isinstance(exc, MonteroError) else f"{type(exc).__name__}: {exc}"
    bundle: dict[str, Any] = {"reason": reason, "replica": None, "logs": [], "health": [],
                              "probe_first_error": probe.first_error if probe else None}
    if isinstance(exc, ReplicaFailed):
        bundle.update(replica=exc.name, logs=exc.logs, health=exc.probes)
        cause = FailureReport(SERVICE, exc.name, "", logs=exc.logs).cause
        if cause:
            bundle["cause"] = cause
            bundle["reason"] = f"{reason}: {cause}"
    return bundle


def _return_to(client: DockerClient, engine: DockerAPI, project: Project, configured: str,
               previous: rel.Release, failed: rel.Release, timeout: float, progress: Progress) -> int:
    """Every replica back on the previous release's image; returns how many were switched back."""
    on_new = {c["Id"] for c in replicas(engine, project.name, SERVICE)
              if engine.inspect(c["Id"]).get("Image") == failed.digest}
    client.image.tag(previous.image, configured)
    if not on_new:
        return 0
    result = rolling_restart(client, project, SERVICE, timeout=timeout, progress=progress, engine=engine,
                             only=on_new)
    return len(result.replaced)


def _prune(client: DockerClient, engine: DockerAPI, project: Project, history: rel.History, keep: int) -> list[str]:
    """Remove the images of releases beyond MONTERO_KEEP_RELEASES (their records stay, marked pruned)."""
    from python_on_whales.exceptions import DockerException

    in_use = {str(engine.inspect(c["Id"]).get("Image")) for c in replicas(engine, project.name, SERVICE, False)}
    notes: list[str] = []
    for old in rel.prune_plan(history, keep):
        if old.digest in in_use:
            continue
        try:
            client.image.remove(old.image)
        except DockerException:
            continue  # still used by a container: tried again after the next deploy
        old.pruned = True
        notes.append(f"release {old.id}: image {old.image} removed (MONTERO_KEEP_RELEASES={keep})")
    return notes


# ------------------------------------------------------------------ rollback


def rollback(client: DockerClient, engine: DockerAPI, project: Project, target_id: str | None = None,
             with_data: bool = False, timeout: float = 180.0, progress: Progress = lambda _m: None,
             restore: Callable[[str], None] | None = None) -> Outcome:
    """Back to the previous (or named) release with the same switch; `restore(backup_id)` puts
    the data back when `with_data` (the command passes the backups feature's restore)."""
    started = time.monotonic()
    history = rel.load_history(project)
    current = history.current_release()
    if current is None:
        raise UsageError("no release is recorded for this project", hint="deploy one with `montero deploy`")
    target = history.get(target_id) if target_id else history.previous()
    if target is None:
        known = ", ".join(r.id for r in history.releases) or "none"
        raise UsageError(f"no release {target_id!r} to roll back to" if target_id
                         else "there is no earlier release to roll back to", hint=f"releases: {known}")
    if target.id == current.id:
        raise UsageError(f"release {target.id} is already the current one", hint="see `montero releases`")
    image_id(engine, target.image)
    backup = current.receipt.backup if current.receipt else None
    if with_data and not backup:
        raise UsageError(f"release {current.id} has no pre-deploy backup to restore",
                         hint="roll back without --with-data, or restore a backup with `montero restore`")
    configured = rel.configured_image(project)
    probe_at = probe_target(engine, project)
    probe = ProbeStream(probe_at).start() if probe_at else None
    when = rel.utc_now()
    record = rel.Release(id=rel.new_release_id("rollback", when, {r.id for r in history.releases}),
                         image=target.image, digest=target.digest, commit=target.commit, created_at=rel.iso(when),
                         by=rel.deployer(), kind="rollback", revision=target.revision, rollback_of=current.id)
    on_other = {c["Id"] for c in replicas(engine, project.name, SERVICE)
                if engine.inspect(c["Id"]).get("Image") != target.digest}
    try:
        sw = switch(client, engine, project, configured, target.image, timeout, progress, probe_at,
                    only=on_other, probe=probe)
    except (MonteroError, Exception) as exc:
        failure = _bundle(exc, probe)
        progress(f"the rollback failed ({failure['reason']}); returning to {current.id}")
        _return_to(client, engine, project, configured, current, target, timeout, progress)
        if probe:
            probe.stop()
        record.outcome, record.reason, record.failure = "failed", failure["reason"], failure
        history.releases.append(record)
        rel.save_history(history)
        raise DeployFailed(f"rollback to {target.id} failed; {current.id} still runs: {failure['reason']}",
                           hint="see `montero releases --json` for the bundle", release=record) from exc
    if probe:
        probe.stop()
    notes: list[str] = []
    if with_data and backup:
        progress(f"restoring the database from {backup} (taken before {current.id}'s migrations)")
        if restore:
            restore(backup)
        notes.append(f"database restored from {backup}")
    record.outcome = "ok"
    record.receipt = receipt_of(sw, probe, time.monotonic() - started, None, live_revision(project))
    current.outcome = "rolled-back"
    history.releases.append(record)
    history.current = target.id
    rel.save_history(history)
    return Outcome(record, current.id, notes)
