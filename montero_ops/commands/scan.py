"""`montero scan`: Trivy on the app image (optional tool; exit 5 with the install hint when absent)."""

from __future__ import annotations

from typing import Annotated

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.state import get_state


def scan(
    ctx: typer.Context,
    image: Annotated[str | None, typer.Option("--image", help="Image to scan (default: the app image).")] = None,
    severity: Annotated[str, typer.Option("--severity", help="Comma list of severities to report.")] = "HIGH,CRITICAL",
    no_fail: Annotated[bool, typer.Option("--no-fail", help="Exit 0 even when vulnerabilities are found.")] = False,
    json: JsonOption = False,
) -> None:
    """Scan the app image for known vulnerabilities with Trivy (exit 1 when found, 5 when Trivy is missing).

    Example: montero scan --severity CRITICAL
    """
    from montero_ops.errors import ProjectNotFound
    from montero_ops.output import success
    from montero_ops.services.scan import app_image
    from montero_ops.services.scan import scan as run_scan

    if image is None:
        try:
            state = get_state(ctx)
            config = state.client(check=False).compose.config(return_json=True)
            image = app_image(state.project(), config)
        except ProjectNotFound:
            raise
        except Exception:  # noqa: BLE001  # naming the image needs no daemon: fall back to the default tag
            image = app_image(get_state(ctx).project())
    run_scan(image, severity=severity, fail=not no_fail, json_output=json)
    if not json:
        success(f"{image}: no {severity} vulnerabilities reported" if not no_fail else f"{image} scanned")


def register(app: typer.Typer) -> None:
    app.command()(scan)
