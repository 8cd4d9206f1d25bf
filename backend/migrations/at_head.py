"""Exit 0 when the SQLite database is already at the head revision, else 1: the entrypoint's fast path.

`alembic upgrade head` imports Alembic, SQLAlchemy and the app's models before it finds there is
nothing to do: 1.5-2 s of every container start on 2 cores (docs/benchmarks.md, figure 4), and a
restart or a new replica usually finds the schema at head. This answers in the time of a bare
interpreter, from the standard library only. Any doubt means 1, and the entrypoint runs Alembic as
before: a URL that is not a plain SQLite file, a missing database or alembic_version table, a
migration file whose revision cannot be read, more than one head, or a database at another revision.

    python migrations/at_head.py   (from /app or backend/, reads DATABASE_URL)
"""

from __future__ import annotations

import ast
import os
import sqlite3
import sys
from pathlib import Path

VERSIONS = Path(__file__).resolve().parent / "versions"
DEFAULT_URL = "sqlite:////app/data/mi_sistema.db"


def sqlite_path(url: str) -> Path | None:
    """The file of a plain `sqlite:///PATH` URL (no query, not in memory); None for anything else."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url[len("sqlite:///"):]
    if not path or path == ":memory:":
        return None
    return Path(path)


def _constant(node: ast.AST) -> object:
    return ast.literal_eval(node)


def revisions(folder: Path = VERSIONS) -> dict[str, tuple[str, ...]] | None:
    """revision -> its down revisions, from every migration file; None if any file is not understood."""
    found: dict[str, tuple[str, ...]] = {}
    for file in sorted(folder.glob("*.py")):
        try:
            tree = ast.parse(file.read_text(), str(file))
        except (OSError, SyntaxError, ValueError):
            return None
        values: dict[str, object] = {}
        for node in tree.body:
            target, value = None, None
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                target, value = node.target.id, node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                target, value = node.targets[0].id, node.value
            if target in ("revision", "down_revision") and value is not None:
                try:
                    values[target] = _constant(value)
                except ValueError:
                    return None
        rev, down = values.get("revision"), values.get("down_revision", "missing")
        if not isinstance(rev, str) or down == "missing":
            return None
        if down is None:
            downs: tuple[str, ...] = ()
        elif isinstance(down, str):
            downs = (down,)
        elif isinstance(down, (tuple, list)) and all(isinstance(d, str) for d in down):
            downs = tuple(down)
        else:
            return None
        found[rev] = downs
    return found or None


def head(folder: Path = VERSIONS) -> str | None:
    revs = revisions(folder)
    if revs is None:
        return None
    referenced = {d for downs in revs.values() for d in downs}
    heads = [r for r in revs if r not in referenced]
    return heads[0] if len(heads) == 1 else None


def current(db: Path) -> list[str] | None:
    if not db.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return [str(row[0]) for row in conn.execute("SELECT version_num FROM alembic_version")]
        finally:
            conn.close()
    except sqlite3.Error:
        return None


def at_head(url: str, folder: Path = VERSIONS) -> bool:
    db = sqlite_path(url)
    if db is None:
        return False
    wanted = head(folder)
    return wanted is not None and current(db) == [wanted]


if __name__ == "__main__":
    sys.exit(0 if at_head(os.environ.get("DATABASE_URL") or DEFAULT_URL) else 1)
