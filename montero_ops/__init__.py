"""Montero: the operations CLI for the Sistema Montero Docker stack."""

__version__ = "0.1.0"


HELP_WIDTH = 80  # the stored root help (_roothelp.py) is rendered at this width


def static_help_fits() -> bool:
    """Use the stored root help unless stdout is a terminal narrower than it."""
    import os
    import sys

    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns >= HELP_WIDTH
    except (OSError, ValueError):
        return True  # not a terminal: Rich would render 80 columns as well


def main() -> None:
    """Console entry point. `montero --version` and `montero --help` answer before Typer
    and Click are imported: they cost more than the whole `docker compose version`
    (docs/benchmarks.md, figure 1). The help is the text Typer renders, stored by
    `python -m montero_ops.cli --write-root-help` and checked by tests/unit/test_help.py."""
    import sys

    args = sys.argv[1:]
    if args == ["--version"]:
        sys.stdout.write(f"montero {__version__}\n")
        return
    if args in (["--help"], ["-h"]) and static_help_fits():
        from montero_ops._roothelp import ROOT_HELP

        sys.stdout.write(ROOT_HELP + "\n")
        return
    from montero_ops.cli import main as cli_main

    cli_main()
