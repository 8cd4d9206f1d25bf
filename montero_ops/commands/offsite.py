"""Offsite parts of the backup commands: `backups push`, and the `--offsite` / `--push` /
`--from-offsite` variants that commands/backup.py hands over to (services/offsite.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.errors import ExitCode
from montero_ops.output import size
from montero_ops.project import Project
from montero_ops.state import get_state


def push_folders(project: Project, folders: list[Path], json: bool) -> list[dict[str, object]]:
    from montero_ops.output import info, print_json, success
    from montero_ops.services import offsite

    cfg = offsite.load(project)
    results = []
    for folder in folders:
        info(f"pushing {folder.name} to {cfg.shown}")
        results.append(offsite.push(cfg, project, folder))
    if json:
        print_json([r.to_dict() for r in results])
        return [r.to_dict() for r in results]
    for r in results:
        success(f"pushed {r.backup} as snapshot {r.snapshot}: sent {size(r.bytes_added)} of "
                f"{size(r.bytes_processed)}" + (" (repository initialised)" if r.created_repository else ""))
    return [r.to_dict() for r in results]


def push_cmd(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(help="Backup ID or path (default: the newest).")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Push every verified local backup.")] = False,
    folder: Annotated[Path | None, typer.Option("--dir", help="Backups folder.")] = None,
    json: JsonOption = False,
) -> None:
    """Send verified local backups to the offsite restic repository (initialised on first use).

    Only changed data is uploaded (restic deduplicates); says how much was sent.

    Example: montero backups push --all
    """
    from montero_ops.services.backups import find_backup, list_backups, verify_backup

    project = get_state(ctx).project()
    root = (folder or project.backups_dir).expanduser().resolve()
    if all_:
        folders = [r.path for r in list_backups(root) if r.manifest and verify_backup(r.path).ok]
    else:
        folders = [find_backup(root, ref, latest=ref is None, project=project.name)]
    push_folders(project, folders, json)


def list_offsite(project: Project, json: bool) -> None:
    from montero_ops.output import print_json
    from montero_ops.services import offsite

    cfg = offsite.load(project)
    snaps = offsite.snapshots(cfg, project.name)
    if json:
        print_json(snaps)
        return
    if not snaps:
        typer.echo(f"no offsite backups in {cfg.shown}", err=True)
    for s in snaps:
        typer.echo(f"{s['backup']:55} snapshot {s['snapshot']}  {s['time'][:19] if s['time'] else ''}")


def verify_offsite(project: Project, ref: str | None, json: bool) -> None:
    from montero_ops.output import print_json
    from montero_ops.services import offsite

    results = offsite.verify(offsite.load(project), project, ref)
    if json:
        print_json([r.to_dict() for r in results])
    else:
        for r in results:
            typer.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.backup} (offsite)" + ("" if r.ok else f": {'; '.join(r.problems)}"))
    if not all(r.ok for r in results):
        raise typer.Exit(ExitCode.FAILED)


def fetch_for_restore(project: Project, ref: str | None, root: Path) -> Path:
    """The backup fetched from offsite into the local backups folder, verified; the normal
    restore path takes it from there (safety backup, atomic swap, rollback)."""
    from montero_ops.output import info
    from montero_ops.services import offsite

    cfg = offsite.load(project)
    info(f"fetching {'backup ' + ref if ref else 'the newest backup'} from {cfg.shown}")
    path = offsite.fetch(cfg, project, ref, root)
    info(f"fetched and verified {path.name}")
    # A fresh host (new clone, .env only) has no ./data yet: the restore's atomic rename needs it,
    # made as `montero up` makes it (the app's uid's when montero runs as root), so the restored
    # file is owned like its folder and the app can write it (root's, every write was a 503).
    from montero_ops.services.stack import prepare_dirs

    prepare_dirs(project)
    return path


def attach(backups_app: typer.Typer) -> None:
    backups_app.command("push")(push_cmd)
