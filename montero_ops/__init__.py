"""Montero: the operations CLI for the Sistema Montero Docker stack."""

__version__ = "0.1.0"


def main() -> None:
    """Console entry point. `montero --version` and `montero --help` answer before Typer
    and Click are imported: they cost more than the whole `docker compose version`
    (docs/benchmarks.md, figure 1). The help is the text Typer rendered, stored as package
    data with the Typer/Rich versions and width it was made with (montero_ops/roothelp.py);
    when those differ from now, Typer renders it live. This is the only such fast path."""
    import sys

    args = sys.argv[1:]
    if args == ["--version"]:
        sys.stdout.write(f"montero {__version__}\n")
        return
    if args in (["--help"], ["-h"]):
        from montero_ops.roothelp import stored_help

        text = stored_help()
        if text is not None:
            sys.stdout.write(text)
            return
    from montero_ops.cli import main as cli_main

    cli_main()
