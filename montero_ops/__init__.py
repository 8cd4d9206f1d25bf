"""Montero: the operations CLI for the Sistema Montero Docker stack."""

__version__ = "0.1.0"


def main() -> None:
    """Console entry point. `montero --version` answers before Typer and Click are imported:
    they cost more than the whole `docker compose version` (docs/benchmarks.md, figure 1)."""
    import sys

    if sys.argv[1:] == ["--version"]:
        sys.stdout.write(f"montero {__version__}\n")
        return
    from montero_ops.cli import main as cli_main

    cli_main()
