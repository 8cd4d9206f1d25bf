"""Montero: the operations CLI for the Sistema Montero Docker stack."""

__version__ = "0.1.0"


def main() -> None:
    """Console entry point. `montero --version` and `montero --help` answer before Typer
    and Click are imported: they cost more than the whole `docker compose version`
    (docs/benchmarks.md, figure 1). The help is the text Typer renders, stored by
    `python -m montero_ops.cli --write-root-help` and checked by tests/unit/test_help.py."""
    import os
    import sys

    args = sys.argv[1:]
    if args == ["--version"]:
        sys.stdout.write(f"montero {__version__}\n")
        return
    if args in (["--help"], ["-h"]):
        try:
            fits = os.get_terminal_size(sys.stdout.fileno()).columns >= 80
        except (OSError, ValueError):
            fits = True
        if fits:
            from montero_ops._roothelp import ROOT_HELP

            sys.stdout.write(ROOT_HELP + "\n")
            return
    from montero_ops.cli import main as cli_main

    cli_main()
