"""`montero update`: rebuild on a refreshed base image, scan the release, then deploy it."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.commands._options import JsonOption, TargetStackOption, YesOption
from montero_ops.commands.deploy import AllowBreakingOption, DeployTimeoutOption, RegistryOption, run_deploy


def update(
    ctx: typer.Context,
    yes: YesOption = False,
    json: JsonOption = False,
    allow_vulnerable: Annotated[bool, typer.Option(
        "--allow-vulnerable", help="Deploy even when Trivy finds HIGH or CRITICAL vulnerabilities.")] = False,
    allow_breaking: AllowBreakingOption = False,
    timeout: DeployTimeoutOption = 180,
    stack: TargetStackOption = None,
    registry: RegistryOption = None,
) -> None:
    """Rebuild the app on a refreshed base image, scan it with Trivy, then deploy it like `montero deploy`.

    The base image (MONTERO_PYTHON_IMAGE) is pulled again when a registry answers; the local Debian base (montero-base) is rebuilt from the current packages instead. A HIGH/CRITICAL finding stops the update before any replica changes (exit 1) unless --allow-vulnerable; without Trivy the release is deployed unscanned and the output says so.

    Example: montero update --yes
    """
    from montero_ops.output import info
    from montero_ops.services import update as upd
    from montero_ops.state import get_state

    notes: list[str] = []

    def prepare() -> None:
        notes.append(upd.refresh_base(get_state(ctx).project(), progress=info))

    run_deploy(ctx, yes, json, allow_breaking, timeout, command="update", prepare=prepare,
               after_build=lambda tag: upd.scan_release(tag, allow_vulnerable, notes), notes=notes,
               stack_name=stack, registry=registry)


def register(app: typer.Typer) -> None:
    app.command()(update)
