"""`montero backups drill`: restore a backup into a throwaway project and prove it works
(services/drill.py)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.errors import ExitCode
from montero_ops.project import Project
from montero_ops.state import get_state


def drill_cmd(
    ctx: typer.Context,
    ref: Annotated[str | None, typer.Argument(help="Backup ID (default: the newest).")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest backup of this project (the default).")] = False,
    offsite: Annotated[bool, typer.Option("--offsite", help="Fetch it from the offsite repository (restic) first.")] = False,
    folder: Annotated[Path | None, typer.Option("--dir", help="Backups folder (where the evidence is written).")] = None,
    json: JsonOption = False,
) -> None:
    """Restore a backup into a throwaway compose project, start it, check it, remove it.

    The running stack is not touched. Checks: migrate to head, /health, every table's row count
    (manifest) and checksum (the backup's file), Redis keys, a temporary account logs in and reads
    through the API. The evidence goes to BACKUPS/.drills/ID.json; exit 1 on any failure.

    Example: montero backups drill --latest --offsite
    """
    from montero_ops.output import info, print_json, success
    from montero_ops.services import drill
    from montero_ops.services.backups import find_backup

    project = get_state(ctx).project()
    root = (folder or project.backups_dir).expanduser().resolve()
    t0 = time.monotonic()
    if offsite:
        from montero_ops.services import offsite as offsite_svc

        cfg = offsite_svc.load(project)
        info(f"drill: fetching {'backup ' + ref if ref else 'the newest backup'} from {cfg.shown}")
        with tempfile.TemporaryDirectory(prefix="fetch-", dir=_scratch(project)) as tmp:
            path = offsite_svc.fetch(cfg, project, None if latest else ref, Path(tmp))
            snap = next((s["snapshot"] for s in reversed(offsite_svc.snapshots(cfg, project.name))
                         if s["backup"] == path.name), "?")
            result = drill.run_drill(project, path, f"offsite snapshot {snap} ({cfg.shown})", root, info, t0,
                                     docker=get_state(ctx).docker(check=False))
    else:
        path = find_backup(root, None if latest else ref, latest=latest or ref is None, project=project.name)
        result = drill.run_drill(project, path, "local", root, info, t0,
                                     docker=get_state(ctx).docker(check=False))
    if json:
        print_json(result.to_dict())
    else:
        for c in result.checks:
            typer.echo(f"{'ok  ' if c.ok else 'FAIL'} {c.name:10} {c.detail}")
    if not result.ok:
        from montero_ops.output import error_line

        error_line(f"drill of {result.backup} failed: " + (result.error or "; ".join(
            f"{c.name}: {c.detail}" for c in result.checks if not c.ok)))
        raise typer.Exit(ExitCode.FAILED)
    success(f"drill of {result.backup} ({result.source}) passed: recovery time {result.recovery_seconds:.1f} s "
            f"(restore {result.restore_seconds:.1f} s + healthy {result.healthy_seconds:.1f} s); "
            f"throwaway project removed")


def _scratch(project: Project) -> Path:
    folder = project.root / ".montero"
    folder.mkdir(exist_ok=True)
    return folder


def attach(backups_app: typer.Typer) -> None:
    backups_app.command("drill")(drill_cmd)
