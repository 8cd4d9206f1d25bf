"""One table of exit codes: ExitCode in errors.py is the source, and the README, docs/cli.md and the
errors.py docstring list exactly its codes (DECLINED shares 1 with FAILED by design)."""

from __future__ import annotations

import re
from pathlib import Path

from montero_ops import errors
from montero_ops.errors import ExitCode

ROOT = Path(__file__).resolve().parents[2]


def codes() -> set[int]:
    return {int(member) for member in ExitCode}


def table_codes(text: str, heading: str) -> set[int]:
    """The numeric first cells of the markdown table under HEADING (up to the next blank line after it)."""
    section = text.split(heading, 1)[1]
    rows = re.findall(r"^\|\s*(\d+)\s*\|", section.split("\n\n", 2)[1], flags=re.MULTILINE)
    return {int(code) for code in rows}


def test_readme_lists_every_exit_code() -> None:
    assert table_codes((ROOT / "README.md").read_text(encoding="utf-8"), "### Exit codes") == codes()


def test_cli_doc_lists_every_exit_code() -> None:
    assert table_codes((ROOT / "docs" / "cli.md").read_text(encoding="utf-8"), "## Exit codes") == codes()


def test_errors_docstring_lists_every_exit_code() -> None:
    doc = errors.__doc__ or ""
    listed = {int(code) for code in re.findall(r"^  (\d+)\s{2,}\S", doc, flags=re.MULTILINE)}
    assert listed == codes()


def test_no_exit_code_outside_errors_py() -> None:
    """Every `exit_code = <n>` and `typer.Exit(<n>)` literal in montero_ops would bypass the table."""
    offenders = []
    for path in (ROOT / "montero_ops").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"exit_code\s*=\s*\d|Exit\(\s*[1-9]\d*\s*\)|TOOL_MISSING\s*=", line) and path.name != "errors.py":
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []
