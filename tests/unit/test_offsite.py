"""Offsite copies through the real Typer app and the real restic, on a local-path repository
(S3 and sftp repositories: tests/e2e/test_offsite_e2e.py). Docker is unreachable, so the
SQLite commands work on the files alone."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_backup_cli import NoEngine
from test_backup_support import make_db, make_migrations
from typer.testing import Result

from montero_ops.services.backups import sqlite_db
from montero_ops.state import State

pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed (scripts/setup.sh)")
PASSWORD = "correct-horse-battery-staple-1234"


@pytest.fixture
def shop(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli_state: State) -> Path:
    cli_state.docker_factory = NoEngine  # type: ignore[assignment]
    for name in ("MONTERO_BACKUP_DIR", "MONTERO_OFFSITE_REPOSITORY", "MONTERO_OFFSITE_PASSWORD",
                 "MONTERO_OFFSITE_PASSWORD_FILE", "RESTIC_PASSWORD", "RESTIC_REPOSITORY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "restic-cache"))
    make_migrations(project)
    make_db(project / "data" / "mi_sistema.db", rows=200)
    (project / ".env").write_text(f"MONTERO_OFFSITE_REPOSITORY={tmp_path / 'repo'}\nMONTERO_OFFSITE_PASSWORD={PASSWORD}\n")
    return project


def error_line(result: Result) -> str:
    """The one red line (progress lines may precede it on stderr)."""
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def backup(cli: Callable[..., Result], *args: str) -> str:
    result = cli("backup", "sqlite", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def test_push_initialises_lists_and_dedups(cli: Callable[..., Result], shop: Path, tmp_path: Path) -> None:
    first = backup(cli)
    result = cli("backups", "push")
    assert result.exit_code == 0, result.stderr
    assert f"pushed {first} as snapshot" in result.stderr and "(repository initialised)" in result.stderr
    assert (tmp_path / "repo" / "config").is_file()
    assert PASSWORD not in result.stdout + result.stderr
    subprocess.run(["sqlite3", str(shop / "data" / "mi_sistema.db"), "UPDATE orders SET id=id WHERE id<3;"], check=True)
    second = backup(cli)
    pushed = cli("backups", "push", second, "--json")
    assert pushed.exit_code == 0, pushed.stderr
    info = json.loads(pushed.stdout)[0]
    assert info["backup"] == second and not info["created_repository"]
    assert 0 < info["bytes_added"] < info["bytes_processed"]  # restic sent only what changed
    listed = cli("backups", "list", "--offsite", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [s["backup"] for s in json.loads(listed.stdout)] == [first, second]
    assert cli("backups", "verify", "--offsite").exit_code == 0


def test_backup_push_in_one_step(cli: Callable[..., Result], shop: Path) -> None:
    result = cli("backup", "sqlite", "--push")
    assert result.exit_code == 0, result.stderr
    assert "integrity ok" in result.stderr and "pushed " in result.stderr and " sent " in result.stderr


def test_unverified_backup_is_not_pushed(cli: Callable[..., Result], shop: Path, tmp_path: Path) -> None:
    bid = backup(cli)
    db = shop / "backups" / bid / "mi_sistema.db"
    os.truncate(db, db.stat().st_size // 2)
    result = cli("backups", "push", bid)
    assert result.exit_code == 2
    assert error_line(result).startswith(f"Error: backup {bid} does not verify, not pushing it")
    assert not (tmp_path / "repo").exists()


def test_wrong_password_is_one_line_and_deletes_nothing(cli: Callable[..., Result], shop: Path, tmp_path: Path) -> None:
    bid = backup(cli, "--push")
    (shop / ".env").write_text(f"MONTERO_OFFSITE_REPOSITORY={tmp_path / 'repo'}\nMONTERO_OFFSITE_PASSWORD=not-it\n")
    before = sorted(p.name for p in (shop / "backups").iterdir())
    for args in (("backups", "push", bid), ("backups", "list", "--offsite"),
                 ("restore", "sqlite", "--from-offsite", "--latest", "--yes")):
        result = cli(*args)
        assert result.exit_code == 1, (args, result.stderr)
        # the repository itself is a secret too (masked by the error path when it comes from .env)
        assert error_line(result).startswith("Error: wrong password for the offsite repository ")
        assert "not-it" not in result.stderr
    assert sorted(p.name for p in (shop / "backups").iterdir()) == before


def test_unreachable_repository(cli: Callable[..., Result], shop: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    (shop / ".env").write_text(f"MONTERO_OFFSITE_REPOSITORY=sftp://nobody@127.0.0.1:{port}//srv/restic\n"
                               f"MONTERO_OFFSITE_PASSWORD={PASSWORD}\n")
    backup(cli)
    result = cli("backups", "push")
    assert result.exit_code == 1, result.stderr
    line = error_line(result)
    assert line.startswith("Error: offsite repository ") and line.endswith(" is unreachable"), line


def test_not_configured(cli: Callable[..., Result], shop: Path) -> None:
    (shop / ".env").write_text("")
    result = cli("backups", "list", "--offsite")
    assert result.exit_code == 2 and error_line(result) == "Error: no offsite repository configured"


def test_fresh_host_restore(cli: Callable[..., Result], shop: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    before = sqlite_db.table_checksums(shop / "data" / "mi_sistema.db")
    backup(cli, "--push")
    fresh = tmp_path / "fresh" / "shop"  # a new clone: the code, a .env with the offsite settings, no data
    shutil.copytree(shop, fresh, ignore=shutil.ignore_patterns("data", "backups"))
    monkeypatch.chdir(fresh)
    result = cli("restore", "sqlite", "--from-offsite", "--latest", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "fetched and verified" in result.stderr and "restored sqlite from" in result.stderr
    assert sqlite_db.table_checksums(fresh / "data" / "mi_sistema.db") == before
    if os.geteuid() == 0:  # ./data made as `montero up` makes it: the app (uid 1000) can write the file
        assert (fresh / "data").stat().st_uid == 1000 and (fresh / "data" / "mi_sistema.db").stat().st_uid == 1000


def test_fresh_host_in_a_folder_of_another_name_is_told_the_project(
        cli: Callable[..., Result], shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = sqlite_db.table_checksums(shop / "data" / "mi_sistema.db")
    backup(cli, "--push")
    fresh = tmp_path / "new-server" / "montero"  # cloned under another name: another project name
    shutil.copytree(shop, fresh, ignore=shutil.ignore_patterns("data", "backups"))
    monkeypatch.chdir(fresh)
    result = cli("restore", "sqlite", "--from-offsite", "--latest", "--yes")
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-2:] == [
        "Error: no offsite backup of project montero in ********",  # the repository is a secret too
        "  Fix: the repository holds backups of project shop: run with --project-name shop (or COMPOSE_PROJECT_NAME=shop)"]
    assert not (fresh / "data").exists() and not (fresh / "backups").exists()
    done = cli("--project-name", "shop", "restore", "sqlite", "--from-offsite", "--latest", "--yes")
    assert done.exit_code == 0, done.stderr
    assert sqlite_db.table_checksums(fresh / "data" / "mi_sistema.db") == before


def _restic(tmp_path: Path, *args: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "RESTIC_REPOSITORY": str(tmp_path / "repo"), "RESTIC_PASSWORD": PASSWORD}
    return subprocess.run(["restic", *args], env=env, cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_a_copy_that_comes_back_different_is_refused_and_nothing_local_changes(
        cli: Callable[..., Result], shop: Path, tmp_path: Path) -> None:
    """restore --from-offsite and verify --offsite check what comes back with montero's own
    checksums: a snapshot whose database is not the one its manifest describes (written past
    montero's push check, with restic itself and montero's tags) is refused, and nothing local
    is created or changed."""
    bid = backup(cli)
    assert cli("backups", "push", bid).exit_code == 0
    [snap] = json.loads(_restic(tmp_path, "snapshots", "--json"))
    tampered = tmp_path / "tampered" / bid
    shutil.copytree(shop / "backups" / bid, tampered)
    with open(tampered / "mi_sistema.db", "r+b") as fh:
        fh.seek(4096 + 100)
        byte = fh.read(1)
        fh.seek(4096 + 100)
        fh.write(bytes([byte[0] ^ 0xFF]))
    tags = [arg for tag in snap["tags"] for arg in ("--tag", tag)]
    _restic(tmp_path, "backup", "--host", "montero", *tags, bid, cwd=tampered.parent)  # the newest for this id
    shutil.rmtree(shop / "backups" / bid)  # only the offsite copy is left
    db = shop / "data" / "mi_sistema.db"
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders WHERE id < 10;"], check=True)
    live = sqlite_db.table_checksums(db)

    result = cli("restore", "sqlite", "--from-offsite", bid, "--yes")
    assert result.exit_code == 1, result.stderr
    line = error_line(result)
    assert line.startswith(f"Error: offsite backup {bid} came back damaged: ") and "checksum" in line, line
    assert sqlite_db.table_checksums(db) == live
    assert list((shop / "backups").iterdir()) == []  # no fetched copy, no .partial-offsite-, no safety backup
    assert not (shop / ".montero" / "restore.json").exists()

    verified = cli("backups", "verify", "--offsite", bid)
    assert verified.exit_code == 1, verified.stdout + verified.stderr
    assert "came back damaged" in verified.stdout + verified.stderr
    assert list((shop / "backups").iterdir()) == []


def test_damaged_repository_data_fails_verify_offsite(cli: Callable[..., Result], shop: Path, tmp_path: Path) -> None:
    """restic's part of verify --offsite: bytes flipped in the repository's pack files on disk
    (what a bad disk at the offsite end does) fail `restic check --read-data`."""
    bid = backup(cli, "--push")
    assert cli("backups", "verify", "--offsite", bid).exit_code == 0
    for pack in (tmp_path / "repo" / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o644)
            with open(pack, "r+b") as fh:
                fh.seek(pack.stat().st_size // 2)
                fh.write(b"\x00\xff" * 8)
    before = sorted(p.name for p in (shop / "backups").iterdir())
    result = cli("backups", "verify", "--offsite", bid)
    assert result.exit_code == 1, result.stdout + result.stderr
    assert "restic check" in result.stdout + result.stderr, result.stdout + result.stderr
    assert sorted(p.name for p in (shop / "backups").iterdir()) == before
