"""The command tree. This module only assembles: each command lives in montero_ops/commands/.

Error path: every MonteroError (and python-on-whales' DockerException) raised anywhere
below the root is turned into one red line plus its fix on stderr and a documented
exit code (see errors.py). `--debug` shows the traceback instead.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from montero_ops import __version__, roothelp
from montero_ops.errors import ExitCode, MonteroError, docker_error_line
from montero_ops.state import State


def _passthrough_exceptions() -> tuple[type[BaseException], ...]:
    """Exits, aborts and usage errors that Typer/click render themselves.

    Typer >= 0.22 vendors click (typer._click) and has its own Exit/Abort classes;
    older Typer uses click's. Let whichever is installed through.
    """
    import importlib

    found: list[type[BaseException]] = [typer.Exit, typer.Abort]
    for module_name in ("typer._click.exceptions", "click.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        found += [getattr(module, n) for n in ("ClickException", "Exit", "Abort") if hasattr(module, n)]
        break  # vendored click present: real click is not what Typer raises
    return tuple(found)


_PASSTHROUGH = _passthrough_exceptions()


class MonteroGroup(TyperGroup):
    """Root group: the one place errors become a red line and an exit code.

    It also loads commands lazily (commands.COMMANDS names each one's module): building
    twenty commands costs more than a whole `docker compose version` (docs/benchmarks.md,
    figure 2). The pre-rendered root help is montero_ops.main()'s, not this group's.
    """

    def list_commands(self, ctx: Any) -> list[str]:
        from montero_ops.commands import COMMANDS

        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands:
            self._load(cmd_name)
        return self.commands.get(cmd_name)

    def _load(self, cmd_name: str) -> None:
        import importlib

        import typer.main

        from montero_ops.commands import COMMANDS

        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return
        module = importlib.import_module(f"montero_ops.commands.{module_name}")
        holder = typer.Typer()
        module.register(holder)
        for name, command in typer.main.get_group(holder).commands.items():
            self.commands.setdefault(name, command)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASSTHROUGH:
            raise
        except MonteroError as exc:
            _report(ctx, exc, exc.message, exc.hint, exc.exit_code)
        except KeyboardInterrupt:
            sys.stderr.write("Interrupted.\n")
            raise typer.Exit(ExitCode.INTERRUPTED) from None
        except Exception as exc:
            if _is_docker_error(exc):
                _report_docker(ctx, exc)
            if _state(ctx).debug:
                raise
            _report(
                ctx,
                exc,
                f"unexpected error: {type(exc).__name__}: {exc}",
                "run again with --debug for the full traceback, and report it",
                ExitCode.FAILED,
            )


def render_root_help(width: int = roothelp.WIDTH) -> str:
    """The root help as Typer renders it at `width` columns (not a terminal), all commands loaded."""
    import typer.rich_utils
    from typer.testing import CliRunner

    saved = typer.rich_utils.MAX_WIDTH
    typer.rich_utils.MAX_WIDTH = width
    try:
        result = CliRunner().invoke(app, ["--help"], env={"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": str(width)})
    finally:
        typer.rich_utils.MAX_WIDTH = saved
    return str(result.stdout)


def write_root_help(target: str = roothelp.STORED) -> str:
    """Store the live render with the installed Typer/Rich versions and the width (the
    package data montero_ops.main() prints); `python -m montero_ops.cli --write-root-help`."""
    versions = {name: roothelp.installed_version(name) for name in roothelp.PACKAGES}
    missing = [name for name, version in versions.items() if version is None]
    if missing:
        raise SystemExit(f"cannot tell the installed version of {', '.join(missing)} from its dist-info folder")
    found = {name: str(version) for name, version in versions.items()}
    with open(target, "w", encoding="utf-8") as out:
        out.write(roothelp.header(found, roothelp.WIDTH) + "\n" + render_root_help())
    return target


def _state(ctx: Any) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def _report(ctx: Any, exc: BaseException, message: str, hint: str | None, code: int) -> None:
    from montero_ops.output import error_line
    from montero_ops.services.redact import mask_values

    if _state(ctx).debug:
        raise exc
    error_line(mask_values(message), mask_values(hint) if hint else hint)
    raise typer.Exit(code)


def _is_docker_error(exc: Exception) -> bool:
    """python-on-whales' own errors (imported only now: an error is already being reported)."""
    import python_on_whales
    from python_on_whales.exceptions import DockerException

    return isinstance(exc, (DockerException, python_on_whales.ClientNotFoundError))


def _report_docker(ctx: Any, exc: Exception) -> None:
    """python-on-whales errors: the meaningful stderr line; --verbose adds the command and output."""
    from montero_ops.client import COMPOSE_HINT, DAEMON_HINT
    from montero_ops.output import console

    state = _state(ctx)
    if state.debug:
        raise exc
    import python_on_whales

    if isinstance(exc, python_on_whales.ClientNotFoundError):
        _report(ctx, exc, "the docker command is not installed", "install Docker or run `montero setup`",
                ExitCode.DOCKER_UNAVAILABLE)
    line = docker_error_line(exc)
    hint = None
    code: int = ExitCode.FAILED
    low = line.lower()
    if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low:
        hint, code = DAEMON_HINT, ExitCode.DOCKER_UNAVAILABLE
    elif "unknown docker command" in low and "compose" in low:
        hint, code = COMPOSE_HINT, ExitCode.DOCKER_UNAVAILABLE
    elif "is not running" in low:
        hint = "run `montero up` first"
    if state.verbose:
        cmd = getattr(exc, "docker_command", None) or []
        err = console(stderr=True)
        from montero_ops.services.redact import mask_values

        err.print(mask_values(" ".join(map(str, cmd))), markup=False)
        for stream in (getattr(exc, "stdout", None), getattr(exc, "stderr", None)):
            if stream:
                err.print(mask_values(str(stream)), markup=False)
    _report(ctx, exc, line, hint, code)


app = typer.Typer(
    cls=MonteroGroup,
    name="montero",
    help="Operate the Sistema Montero Docker stack: build, run, observe, back up and repair it.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"montero {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    project_dir: Annotated[
        str | None,
        typer.Option("--project-dir", envvar="MONTERO_PROJECT_DIR", help="Folder holding docker/compose.yml (default: search upwards)."),
    ] = None,
    env_file: Annotated[
        str | None, typer.Option("--env-file", help="Environment file (default: .env in the project).")
    ] = None,
    project_name: Annotated[
        str | None,
        typer.Option("--project-name", "-p", help="Compose project name (default: the project folder's name)."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Print the underlying docker commands and their full output.")
    ] = False,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Docker context to use (e.g. a swarm manager), like `docker --context`."),
    ] = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version_callback, is_eager=True, help="Show montero's version and exit."),
    ] = None,
) -> None:
    if context:
        import os

        # Every docker and compose process montero starts inherits it (DOCKER_HOST works the same way).
        os.environ["DOCKER_CONTEXT"] = context
    given = ctx.obj if isinstance(ctx.obj, State) else State()  # a test's State brings its fake clients
    ctx.obj = State(project_dir=project_dir, env_file=env_file, project_name=project_name, debug=debug, verbose=verbose,
                    engine_factory=given.engine_factory, docker_factory=given.docker_factory)


def main() -> None:
    app(prog_name="montero")


if __name__ == "__main__" and sys.argv[1:] == ["--write-root-help"]:
    print(f"wrote {write_root_help()}")
