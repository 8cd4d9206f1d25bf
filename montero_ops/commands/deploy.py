"""`montero deploy`: the word for shipping a release (issue 14).

The Swarm verbs moved to `montero swarm …`; `montero deploy swarm|status|rollback|remove`
still work and print one line naming the new spelling.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from montero_ops.commands.swarm import OLD_SPELLING, VERBS

deploy_app = typer.Typer(
    help="Ship the stack (the Swarm verbs moved to `montero swarm`).\n\nExample: montero swarm deploy --stack montero",
    no_args_is_help=True,
)


def _old_spelling(old: str, new: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from montero_ops.output import warn

        warn(f"`montero deploy {old}` is now `montero swarm {new}`")
        return function(*args, **kwargs)

    return wrapper


for _old, _new in OLD_SPELLING.items():
    deploy_app.command(_old, hidden=True)(_old_spelling(_old, _new, VERBS[_new]))


def register(app: typer.Typer) -> None:
    app.add_typer(deploy_app, name="deploy")
