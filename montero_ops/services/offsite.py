"""Offsite copies of verified backups in a restic repository (local path, sftp: or s3:).

Settings (environment first, then .env): MONTERO_OFFSITE_REPOSITORY, MONTERO_OFFSITE_PASSWORD
or MONTERO_OFFSITE_PASSWORD_FILE, and restic's own variables (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, RESTIC_*) for S3. The password reaches restic only
through its environment (RESTIC_PASSWORD / RESTIC_PASSWORD_FILE), never its command line, and
no message here ever contains it or the repository URL's credentials.

Each backup folder is one restic snapshot tagged `montero`, `project=NAME` and `id=BACKUP_ID`,
so `backups list --offsite` and `restore --from-offsite ID` need nothing but the repository.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from montero_ops.errors import MonteroError, UsageError
from montero_ops.project import Project
from montero_ops.services import redact

if TYPE_CHECKING:
    from montero_ops.services.backups.prune import Policy

PASSTHROUGH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_SESSION_TOKEN",
               "RESTIC_CACHE_DIR", "RESTIC_COMPRESSION")
TIMEOUT = 3600.0


class OffsiteError(MonteroError):
    """The offsite repository refused or could not be reached; nothing local was changed."""

    stderr: str = ""  # restic's own words, for deciding what to do next; never printed (may hold a URL)


@dataclass(frozen=True)
class OffsiteConfig:
    repository: str
    env: dict[str, str]  # what restic gets in its environment (secrets included, never printed)
    options: tuple[str, ...] = ()  # restic -o options (no secrets: e.g. the sftp command)

    @property
    def shown(self) -> str:
        """The repository as it may be printed: credentials in a URL masked."""
        return redact.redact_url(self.repository)


def load(project: Project) -> OffsiteConfig:
    from montero_ops.services.envfile import parse_env

    values = parse_env(project.env_file.read_text(errors="replace")) if project.env_file.is_file() else {}

    def get(name: str) -> str:
        return os.environ.get(name) or values.get(name) or ""

    repo = get("MONTERO_OFFSITE_REPOSITORY")
    if not repo:
        raise UsageError("no offsite repository configured",
                         hint="set MONTERO_OFFSITE_REPOSITORY (a path, sftp:user@host:/path or s3:http://host/bucket)"
                              " and MONTERO_OFFSITE_PASSWORD in .env")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RESTIC_", "AWS_"))}
    env["RESTIC_REPOSITORY"] = repo
    password, password_file = get("MONTERO_OFFSITE_PASSWORD"), get("MONTERO_OFFSITE_PASSWORD_FILE")
    if password_file:
        path = Path(password_file).expanduser()
        if not path.is_absolute():
            path = project.root / path
        if not path.is_file():
            raise UsageError(f"MONTERO_OFFSITE_PASSWORD_FILE {path} does not exist", hint="create it or fix the path")
        env["RESTIC_PASSWORD_FILE"] = str(path)
    elif password:
        env["RESTIC_PASSWORD"] = password
    else:
        raise UsageError("no offsite repository password",
                         hint="set MONTERO_OFFSITE_PASSWORD or MONTERO_OFFSITE_PASSWORD_FILE in .env "
                              "(losing it loses the offsite backups)")
    for name in PASSTHROUGH:
        if get(name):
            env[name] = get(name)
    # An sftp server on another port or with its own key: the ssh command line restic runs
    # (e.g. `ssh -i /root/.ssh/backup -p 2222 user@host -s sftp`).
    sftp = get("MONTERO_OFFSITE_SFTP_COMMAND")
    options = ("-o", f"sftp.command={sftp}") if sftp else ()
    env.setdefault("RESTIC_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"montero-restic-cache-{os.getuid()}"))
    return OffsiteConfig(repo, env, options)


def _explain(cfg: OffsiteConfig, stderr: str) -> OffsiteError:
    """restic's stderr turned into one line that says what is wrong (never its secrets)."""
    low = stderr.lower()
    if "wrong password" in low or "no key found" in low:
        return OffsiteError(f"wrong password for the offsite repository {cfg.shown}",
                            hint="check MONTERO_OFFSITE_PASSWORD(_FILE): it must be the one the repository was created with")
    if any(s in low for s in ("connection refused", "no such host", "dial tcp", "connection closed",
                              "ssh command exited", "unable to open repository", "timeout", "network is unreachable")):
        return OffsiteError(f"offsite repository {cfg.shown} is unreachable",
                            hint="check MONTERO_OFFSITE_REPOSITORY, the server and the network; nothing local was changed")
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    detail = lines[-1] if lines else "restic failed"
    for secret in (cfg.env.get("RESTIC_PASSWORD"), cfg.env.get("AWS_SECRET_ACCESS_KEY")):
        if secret:
            detail = detail.replace(secret, redact.MASK)
    return OffsiteError(f"offsite repository {cfg.shown}: {redact.redact_url(detail)}",
                        hint="run `montero backups verify --offsite` for a full check")


def restic(cfg: OffsiteConfig, *args: str, timeout: float = TIMEOUT, cwd: Path | None = None) -> str:
    if shutil.which("restic") is None:
        raise OffsiteError("restic is not installed", hint="sudo apt-get install restic (or bash scripts/setup.sh)")
    try:
        proc = subprocess.run(["restic", *cfg.options, *args],
                              env=cfg.env, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise OffsiteError(f"offsite repository {cfg.shown} did not answer within {timeout:.0f} s",
                           hint="check the server and the network; nothing local was changed") from exc
    if proc.returncode != 0:
        error = _explain(cfg, proc.stderr)
        error.stderr = proc.stderr
        raise error
    return proc.stdout


def _no_repository(exc: OffsiteError) -> bool:
    return "is there a repository at the following location" in exc.stderr.lower()


def _exists(cfg: OffsiteConfig) -> bool:
    """True when the repository exists and opens; False when there is none yet (to init)."""
    try:
        restic(cfg, "cat", "config", timeout=120)
        return True
    except OffsiteError as exc:
        if "wrong password" in exc.message or "unreachable" in exc.message:
            raise
        return False  # "unable to open config file ... Is there a repository": none yet


def ensure_repository(cfg: OffsiteConfig) -> bool:
    """Initialise the repository on first use; True when it was created now."""
    if _exists(cfg):
        return False
    restic(cfg, "init", timeout=300)
    return True


@dataclass
class PushResult:
    backup: str
    snapshot: str
    bytes_added: int
    bytes_processed: int
    created_repository: bool
    repository: str

    def to_dict(self) -> dict[str, Any]:
        return {"backup": self.backup, "snapshot": self.snapshot, "bytes_added": self.bytes_added,
                "bytes_processed": self.bytes_processed, "created_repository": self.created_repository,
                "repository": self.repository}


def snapshots(cfg: OffsiteConfig, project: str | None = None) -> list[dict[str, Any]]:
    """This project's snapshots, oldest first: {snapshot, backup, time, paths}."""
    args = ["snapshots", "--json", "--tag", "montero" if project is None else f"project={project}"]
    data = json.loads(restic(cfg, *args, timeout=300) or "[]")
    out = []
    for snap in data or []:
        tags = snap.get("tags") or []
        backup = next((t[3:] for t in tags if t.startswith("id=")), None)
        if backup:
            out.append({"snapshot": snap.get("short_id") or snap["id"][:8], "snapshot_id": snap["id"],
                        "backup": backup, "time": snap.get("time"), "paths": snap.get("paths", []),
                        "label": "safety" if "label=safety" in tags else "manual",
                        "project": next((t[8:] for t in tags if t.startswith("project=")), None)})
    return sorted(out, key=lambda s: (s["backup"], s["time"] or ""))


def unchanged_since_verified(folder: Path) -> tuple[Any, list[str]]:
    """(manifest, problems): every file of the backup has its manifest size and SHA-256.

    A backup counts only once its copy passed PRAGMA integrity_check and was hashed
    (services/backups/create.py): equal hashes mean the very bytes that passed, so a push
    need not run integrity_check again (on 1 GB that is most of montero's own time).
    Damage, truncation, a missing file or a tampered manifest still stop the push."""
    from montero_ops.services.backups.manifest import read_manifest, sha256_file

    try:
        manifest = read_manifest(folder)
    except UsageError as exc:
        return None, [exc.message]
    problems = []
    for entry in manifest.files:
        path = folder / entry.name
        if not path.is_file():
            problems.append(f"{entry.name} is missing")
        elif path.stat().st_size != entry.size:
            problems.append(f"{entry.name} is {path.stat().st_size} bytes, the manifest says {entry.size}")
        elif sha256_file(path) != entry.sha256:
            problems.append(f"{entry.name} checksum does not match the manifest")
    if not manifest.files:
        problems.append("the manifest lists no files")
    return manifest, problems


def push(cfg: OffsiteConfig, project: Project, folder: Path) -> PushResult:
    """Send one verified backup folder; an unverified one is refused."""
    manifest, problems = unchanged_since_verified(folder)
    if problems:
        raise UsageError(f"backup {folder.name} does not verify, not pushing it: {'; '.join(problems)}",
                         hint="push only verified backups: `montero backups verify` / make a new one")
    # A safety backup is tagged as one, so offsite retention does not count it either.
    label = ["--tag", "label=safety"] if manifest is not None and manifest.label == "safety" else []
    args = ["backup", "--json", "--host", "montero", "--tag", "montero", "--tag", f"project={project.name}",
            "--tag", f"id={folder.name}", *label, folder.name]
    created = False
    try:
        out = restic(cfg, *args, cwd=folder.parent)
    except OffsiteError as exc:
        # The repository is initialised on first use: asked for only when restic says there is
        # none (each restic start derives the key again, about a second).
        if not _no_repository(exc):
            raise
        restic(cfg, "init", timeout=300)
        created = True
        out = restic(cfg, *args, cwd=folder.parent)
    summary: dict[str, Any] = {}
    for line in out.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if msg.get("message_type") == "summary":
            summary = msg
    return PushResult(folder.name, str(summary.get("snapshot_id", ""))[:8], int(summary.get("data_added", 0)),
                      int(summary.get("total_bytes_processed", 0)), created, cfg.shown)


def fetch(cfg: OffsiteConfig, project: Project, backup: str | None, dest_dir: Path) -> Path:
    """Restore one backup folder from the repository into dest_dir/ID and verify it there.

    backup None = this project's newest. Written under a hidden .partial name and renamed
    when verified, so a failed fetch never looks like a local backup."""
    from montero_ops.services.backups import verify_backup

    snaps = snapshots(cfg, project.name)
    if backup:
        snaps = [s for s in snaps if s["backup"] == backup or s["backup"].startswith(backup)
                 or s["snapshot"] == backup]
    if not snaps:
        raise UsageError(f"no offsite backup {backup or 'of project ' + project.name} in {cfg.shown}",
                         hint=_other_projects_hint(cfg, project) or "see `montero backups list --offsite`")
    snap = snaps[-1]
    target: Path = dest_dir / str(snap["backup"])
    if target.exists():
        check = verify_backup(target)
        if check.ok:
            return target
        raise UsageError(f"a different {target} exists locally and does not verify", hint="move it away first")
    dest_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".partial-offsite-", dir=dest_dir))
    try:
        restic(cfg, "restore", snap["snapshot_id"], "--target", str(work))
        found = [m.parent for m in work.rglob("manifest.json") if m.parent.name == snap["backup"]]
        if not found:
            raise OffsiteError(f"offsite snapshot {snap['snapshot']} holds no backup {snap['backup']}")
        check = verify_backup(found[0])
        if not check.ok:
            raise OffsiteError(f"offsite backup {snap['backup']} came back damaged: {'; '.join(check.problems)}",
                               hint="run `montero backups verify --offsite`; try an older one")
        found[0].rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _other_projects_hint(cfg: OffsiteConfig, project: Project) -> str | None:
    """A fresh host cloned into a folder of another name has another project name: say which
    projects the repository holds and how to ask for one."""
    others = sorted({str(s["project"]) for s in snapshots(cfg) if s.get("project") and s["project"] != project.name})
    if not others:
        return None
    return (f"the repository holds backups of project {', '.join(others)}: "
            f"run with --project-name {others[0]} (or COMPOSE_PROJECT_NAME={others[0]})")


@dataclass
class OffsiteVerify:
    backup: str
    ok: bool
    problems: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.backup, "ok": self.ok, "problems": self.problems, "where": "offsite"}


def verify(cfg: OffsiteConfig, project: Project, backup: str | None) -> list[OffsiteVerify]:
    """restic check (structure and a read of all data), then montero's own checksums of what
    comes back for one backup (the newest by default)."""
    problems: list[str] = []
    try:
        restic(cfg, "check", "--read-data")
    except OffsiteError as exc:
        if "wrong password" in exc.message or "unreachable" in exc.message:
            raise
        problems.append(f"restic check: {exc.message}")
    with tempfile.TemporaryDirectory(prefix="montero-offsite-verify-") as tmp:
        try:
            got = fetch(cfg, project, backup, Path(tmp))
            name = got.name
        except (OffsiteError, UsageError) as exc:
            if isinstance(exc, UsageError) and not problems:
                raise
            name, problems = backup or "?", problems + [exc.message]
    return [OffsiteVerify(name, not problems, problems)]


@dataclass
class ForgetResult:
    repository: str
    delete: list[dict[str, Any]]
    keep: list[dict[str, Any]]
    dry_run: bool

    def to_dict(self) -> dict[str, Any]:
        return {"repository": self.repository, "delete": self.delete, "keep": self.keep, "dry_run": self.dry_run}


def forget(cfg: OffsiteConfig, project: Project, policy: Policy, dry_run: bool = False,
           now: datetime | None = None) -> ForgetResult:
    """The local retention rule applied to this project's snapshots: the plan is made here
    (services/backups/prune.py, so both sides agree), then `restic forget --prune` removes
    exactly the snapshots it names. The newest snapshot is never forgotten (only verified
    backups are pushed, so it is the newest verified one offsite)."""
    from montero_ops.services.backups.prune import Item, id_time, retention

    snaps = snapshots(cfg, project.name)
    items, by_id = [], {}
    for s in snaps:
        when = id_time(str(s["backup"])) or datetime.fromisoformat(str(s["time"])[:19]).replace(tzinfo=UTC)
        items.append(Item(str(s["snapshot_id"]), when, s.get("label") == "safety"))
        by_id[str(s["snapshot_id"])] = s
    regular = sorted((i for i in items if not i.safety), key=lambda i: (i.when, i.id))
    decision = retention(items, policy, regular[-1].id if regular else None, now)
    delete = [by_id[i] for i in decision.delete]
    keep = [{**by_id[i], "reasons": why} for i, why in decision.keep.items()]
    result = ForgetResult(cfg.shown, delete, keep, dry_run)
    if not dry_run:
        apply_forget(cfg, result)
    return result


def apply_forget(cfg: OffsiteConfig, plan: ForgetResult) -> None:
    """Forget exactly the planned snapshots and prune the data only they used."""
    if plan.delete:
        restic(cfg, "forget", "--prune", *[str(s["snapshot_id"]) for s in plan.delete])
    plan.dry_run = False
