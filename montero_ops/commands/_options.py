"""Options shared by several commands, spelled like compose's."""

from __future__ import annotations

from typing import Annotated

import typer

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
TargetStackOption = Annotated[str | None, typer.Option(
    "--stack", "-s", show_default=False,
    help="Act on this swarm stack (default: the project's replicas on this host when they run, else the swarm "
         "stack MONTERO_STACK names, default montero, when this engine manages it).",
)]
