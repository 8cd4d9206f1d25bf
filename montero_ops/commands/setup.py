"""`montero setup` and `montero images bootstrap`: prepare a machine to run the stack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from montero_ops.state import get_state

images_app = typer.Typer(
    help="Base images for hosts that reach no container registry.\n\nExample: montero images bootstrap",
    no_args_is_help=True,
)


def _root(ctx: typer.Context) -> Path | None:
    from montero_ops.errors import ProjectNotFound

    try:
        return get_state(ctx).project().root
    except ProjectNotFound:  # the scripts beside the installed package still work
        return None


def setup(
    ctx: typer.Context,
    skip_images: Annotated[
        bool, typer.Option("--skip-images", help="Do not pull or build the base images.")
    ] = False,
) -> None:
    """Prepare this machine: venv, Docker Engine, Compose v2 plugin, redis-server, base images.

    Idempotent: each step is checked first, so a second run is quick. Installs only what is missing (Debian/Ubuntu, as root). Runs scripts/setup.sh.

    Example: montero setup
    """
    from montero_ops.output import success
    from montero_ops.services.setup import setup as run_setup

    run_setup(_root(ctx), skip_images=skip_images)
    success("this machine can build and run the stack: `montero up`")


@images_app.command("bootstrap")
def bootstrap(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Rebuild the image even if it exists.")] = False,
) -> None:
    """Build montero-base:<codename> from Debian packages (debootstrap) when no registry answers.

    One local image stands in for python:3.11-slim, redis:7-alpine and nginx:alpine; point the stack at it with MONTERO_PYTHON_IMAGE / MONTERO_REDIS_IMAGE / MONTERO_NGINX_IMAGE in .env (`montero setup` does both when pulls fail). Runs scripts/bootstrap-images.sh.

    Example: montero images bootstrap --force
    """
    from montero_ops.services.setup import bootstrap_images

    bootstrap_images(_root(ctx), force=force)


def register(app: typer.Typer) -> None:
    app.command()(setup)
    app.add_typer(images_app, name="images")
