"""`montero backup/backups/restore` through the real Typer app: exact lines, exit codes, nothing changed.

Docker is made unreachable (the one boundary faked), so SQLite commands run on the files alone.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_backup_support import make_db, make_migrations
from typer.testing import Result

from montero_ops.errors import DockerUnavailable
from montero_ops.services.backups import sqlite_db
from montero_ops.state import State


class NoEngine:
    def __init__(self, *a: object, **k: object) -> None:
        pass

    def ping(self) -> None:
        raise DockerUnavailable("the Docker socket /var/run/docker.sock does not exist: the daemon is not running")


@pytest.fixture
def shop(project: Path, monkeypatch: pytest.MonkeyPatch, cli_state: State) -> Path:
    cli_state.docker_factory = NoEngine  # type: ignore[assignment]  # the State hands `cli` a daemon that is down
    monkeypatch.delenv("MONTERO_BACKUP_DIR", raising=False)
    make_migrations(project)
    make_db(project / "data" / "mi_sistema.db", rows=200)
    return project


def backup(cli: Callable[..., Result], *args: str) -> str:
    result = cli("backup", "sqlite", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return str(json.loads(result.stdout)["id"])


def state(root: Path) -> tuple[dict[str, str], list[str]]:
    """What must not change on refusal: the database and the set of backups."""
    backups = sorted(p.name for p in (root / "backups").iterdir()) if (root / "backups").exists() else []
    return sqlite_db.table_checksums(root / "data" / "mi_sistema.db"), backups


def refused(result: Result, code: int, line: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.stderr)
    assert result.stderr.splitlines()[0] == line


def test_backup_list_verify(cli: Callable[..., Result], shop: Path) -> None:
    result = cli("backup", "sqlite")
    assert result.exit_code == 0, result.stderr
    assert "integrity ok" in result.stderr
    assert "SQLite: online copy" in result.stderr  # progress on stderr
    folder = Path(result.stdout.strip())
    assert folder.parent == shop / "backups" and folder.name.endswith("_shop_sqlite")
    listed = json.loads(cli("backups", "list", "--json").stdout)
    assert [b["id"] for b in listed] == [folder.name] and listed[0]["revision"] == "bbb2"
    verified = cli("backups", "verify", "--all")
    assert verified.exit_code == 0 and verified.stdout == f"ok   {folder.name}\n"


def test_restore_round_trip(cli: Callable[..., Result], shop: Path) -> None:
    db = shop / "data" / "mi_sistema.db"
    before = sqlite_db.table_checksums(db)
    backup(cli, "--compress")
    subprocess.run(["sqlite3", str(db), "DELETE FROM orders; UPDATE order_items SET qty=0;"], check=True)
    result = cli("restore", "sqlite", "--latest", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "restored sqlite from" in result.stderr
    assert sqlite_db.table_checksums(db) == before


def test_missing_backup(cli: Callable[..., Result], shop: Path) -> None:
    before = state(shop)
    refused(cli("restore", "sqlite", "20990101T000000Z_nope", "--yes"), 2,
            f'Error: no backup "20990101T000000Z_nope" in {shop / "backups"}')
    assert state(shop) == before


def test_truncated_file(cli: Callable[..., Result], shop: Path) -> None:
    bid = backup(cli)
    file = shop / "backups" / bid / "mi_sistema.db"
    size = file.stat().st_size
    os.truncate(file, size // 2)
    before = state(shop)
    refused(cli("restore", "sqlite", bid, "--yes"), 2,
            f"Error: backup {bid} is damaged: mi_sistema.db is {size // 2} bytes, the manifest says {size} (truncated)")
    assert state(shop) == before
    verify = cli("backups", "verify", bid)
    assert verify.exit_code == 1 and verify.stdout.startswith(f"FAIL {bid}: mi_sistema.db is {size // 2} bytes")


def test_wrong_checksum(cli: Callable[..., Result], shop: Path) -> None:
    bid = backup(cli)
    file = shop / "backups" / bid / "mi_sistema.db"
    data = bytearray(file.read_bytes())
    data[-100] ^= 0xFF
    file.write_bytes(bytes(data))
    before = state(shop)
    refused(cli("restore", "sqlite", bid, "--yes"), 2,
            f"Error: backup {bid} is damaged: mi_sistema.db checksum does not match the manifest")
    assert state(shop) == before


def test_manifest_missing(cli: Callable[..., Result], shop: Path) -> None:
    bid = backup(cli)
    (shop / "backups" / bid / "manifest.json").unlink()
    before = state(shop)
    refused(cli("restore", "sqlite", bid, "--yes"), 2,
            f"Error: backup {bid} has no manifest.json (incomplete, or not made by montero)")
    assert state(shop) == before


def test_other_projects_backup(cli: Callable[..., Result], shop: Path) -> None:
    bid = backup(cli)
    path = shop / "backups" / bid / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["project"] = "billing"
    path.write_text(json.dumps(manifest))
    before = state(shop)
    refused(cli("restore", "sqlite", bid, "--yes"), 2, f'Error: backup {bid} belongs to project "billing", not "shop"')
    assert state(shop) == before


def test_future_revision(cli: Callable[..., Result], shop: Path) -> None:
    db = shop / "data" / "mi_sistema.db"
    subprocess.run(["sqlite3", str(db), "UPDATE alembic_version SET version_num='zzz9'"], check=True)
    bid = backup(cli)
    subprocess.run(["sqlite3", str(db), "UPDATE alembic_version SET version_num='bbb2'"], check=True)
    before = state(shop)
    refused(cli("restore", "sqlite", bid, "--yes"), 2,
            f"Error: backup {bid} has database revision zzz9, newer than this code's head bbb2")
    assert state(shop) == before


def test_no_space_left(cli: Callable[..., Result], shop: Path, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    if os.getuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=False).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        before = state(shop)
        result = cli("backup", "sqlite", "--dir", str(small))
        assert result.exit_code == 1
        line = result.stderr.splitlines()[0]
        assert line.startswith(f"Error: not enough free space in {small} for the SQLite backup: need ")
        assert line.endswith(" MB free")
        assert os.listdir(small) == [] and state(shop) == before
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_restore_without_yes_refuses_non_interactive(cli: Callable[..., Result], shop: Path) -> None:
    bid = backup(cli)
    before = state(shop)
    refused(cli("restore", "sqlite", bid), 2,
            f"Error: restore would overwrite {shop / 'data' / 'mi_sistema.db'} with backup {bid}; pass --yes")
    assert state(shop) == before


def test_restore_needs_a_backup_named(cli: Callable[..., Result], shop: Path) -> None:
    refused(cli("restore", "sqlite"), 2, "Error: say which backup: an ID, a path, or --latest")


def test_prune(cli: Callable[..., Result], shop: Path) -> None:
    ids = [backup(cli) for _ in range(3)]
    refused(cli("backups", "prune", "--keep", "1"), 2, f"delete {ids[1]}")
    assert len(list((shop / "backups").iterdir())) == 3
    result = cli("backups", "prune", "--keep", "1", "--yes", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["delete"] == [ids[1], ids[0]]
    assert [p.name for p in (shop / "backups").iterdir()] == [ids[2]]


def test_prune_older_than_bad_value(cli: Callable[..., Result], shop: Path) -> None:
    refused(cli("backups", "prune", "--keep", "1", "--older-than", "soon"), 2,
            "Error: --older-than 'soon': use a number and d, h or w (e.g. 30d)")


def test_postgres_is_refused_clearly(cli: Callable[..., Result], shop: Path) -> None:
    (shop / ".env").write_text("DATABASE_URL=postgresql://u:secret@db/montero\n")
    result = cli("backup", "sqlite")
    refused(result, 1, "Error: DATABASE_URL points to PostgreSQL: there is no SQLite file to back up or restore")
    assert "montero backup postgres" in result.stderr
    assert "secret" not in result.stderr


class PostgresStackEngine(NoEngine):
    """A running stack of profile postgres (its DATABASE_URL is set by compose.postgres.yml, not .env)."""

    def ping(self) -> None:
        pass

    def project_containers(self, project: str, all: bool = True) -> list[dict[str, object]]:
        return [{"Labels": {"com.docker.compose.service": name}} for name in ("app", "redis", "postgres")]


@pytest.mark.parametrize("command", [["backup"], ["backup", "sqlite"], ["restore", "sqlite", "--latest", "--yes"]])
def test_sqlite_commands_refuse_a_stack_running_on_postgres(
    cli: Callable[..., Result], shop: Path, monkeypatch: pytest.MonkeyPatch, command: list[str], cli_state: State
) -> None:
    """./data still holds the SQLite file of before the switch: handling it would look like success."""
    cli_state.docker_factory = PostgresStackEngine  # type: ignore[assignment]
    monkeypatch.setattr("montero_ops.services.status.defined_services", lambda project: ["app", "redis"])
    before = state(shop)
    result = cli(*command)
    verb = command[0]
    what = command[1] if len(command) > 1 else "all"
    refused(result, 2, f"Error: this stack runs on PostgreSQL (profile postgres): `montero {verb} {what}` "
                       "would handle the SQLite file in ./data, not your data")
    assert f"`montero {verb} postgres`" in result.stderr
    assert state(shop) == before


def test_backup_all_without_docker_says_what_is_needed(cli: Callable[..., Result], shop: Path) -> None:
    result = cli("backup")
    refused(result, 3, "Error: the Docker socket /var/run/docker.sock does not exist: the daemon is not running "
                       "(Redis data is in a Docker volume)")
    assert "`montero backup sqlite`" in result.stderr


def test_redis_snapshot_runs_exactly_these_docker_commands(docker, engine, project: Path, prefix: list[str],
                                                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The docker boundary only: BGSAVE (never SAVE) through compose exec, files out with docker cp."""
    import python_on_whales.components.container.cli_wrapper as container_cli

    from montero_ops.client import build_client
    from montero_ops.project import find_project
    from montero_ops.services.backups.redis_data import snapshot
    from montero_ops.services.backups.stack import ComposeStack
    from tests.unit.conftest import container

    monkeypatch.setattr(container_cli, "run", docker)
    engine.set(container("redis"))
    saves = iter(["1700000000", "1700000000", "1800000000"])
    answers = {("CONFIG", "GET", "appendonly"): "appendonly\nyes\n", ("CONFIG", "GET", "save"): "save\n3600 1\n",
               ("CONFIG", "GET", "dir"): "dir\n/data\n", ("CONFIG", "GET", "dbfilename"): "dbfilename\ndump.rdb\n",
               ("CONFIG", "GET", "appenddirname"): "appenddirname\nappendonlydir\n",
               ("BGSAVE", "SCHEDULE"): "Background saving started\n", ("INFO", "keyspace"): "db0:keys=3,expires=1\n"}

    def redis_cli(cmd: list[str]) -> str:
        args = tuple(cmd[cmd.index("redis-cli") + 1:])
        return next(saves) + "\n" if args == ("LASTSAVE",) else answers.get(args, "")

    docker.respond(lambda cmd: "redis-cli" in cmd, redis_cli)
    stack = ComposeStack(find_project(project), build_client(find_project(project)), docker=engine)
    info = snapshot(stack.redis(), tmp_path / "redis")
    assert info["persistence"] == "aof" and info["lastsave"] == 1800000000
    execs = [c[len(prefix):] for c in docker.calls if "redis-cli" in c]
    assert ["exec", "--index", "1", "--no-TTY", "redis", "redis-cli", "BGSAVE", "SCHEDULE"] in execs
    assert not any(c[-1] == "SAVE" for c in execs)
    cid = container("redis")[0]["Id"]
    copies = [c for c in docker.calls if c[1:3] == ["container", "cp"]]
    assert copies == [["docker", "container", "cp", f"{cid}:/data/dump.rdb", str(tmp_path / "redis" / "dump.rdb")],
                      ["docker", "container", "cp", f"{cid}:/data/appendonlydir",
                       str(tmp_path / "redis" / "appendonlydir")]]


def test_prune_removes_unfinished_backups(cli: Callable[..., Result], shop: Path) -> None:
    bid = backup(cli)
    stale = shop / "backups" / ".partial-abc123"
    stale.mkdir()
    (stale / "mi_sistema.db").write_bytes(b"half")
    os.utime(stale, (0, 0))
    fresh = shop / "backups" / ".partial-running"
    fresh.mkdir()  # a backup in progress right now: left alone
    result = cli("backups", "prune", "--keep", "5", "--yes")
    assert result.exit_code == 0, result.stderr
    assert "delete .partial-abc123 (unfinished backup)" in result.stderr
    assert sorted(p.name for p in (shop / "backups").iterdir()) == [".partial-running", bid]


def test_stack_start_keeps_scale_and_reports_unhealthy(docker, engine, project: Path, prefix: list[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from montero_ops.client import build_client
    from montero_ops.errors import MonteroError
    from montero_ops.project import find_project
    from montero_ops.services import wait
    from montero_ops.services.backups.stack import ComposeStack
    from tests.unit.conftest import container

    monkeypatch.setattr(wait.time, "sleep", lambda _s: None)  # wait_until's sleep
    engine.timeline = [
        [container("app", 1, health="starting"), container("app", 2, health="starting")],
        [container("app", 1, health="healthy"), container("app", 2, health="unhealthy")],
    ]
    stack = ComposeStack(find_project(project), build_client(find_project(project)), docker=engine)
    with pytest.raises(MonteroError) as err:
        stack.start(["app"])
    assert err.value.message == "service 'app' is unhealthy after start"
    # `compose start`, not `up`: `up app` would scale three replicas back to one.
    assert [c[len(prefix):] for c in docker.calls] == [["start", "app"]]


def test_damaged_database_with_matching_checksum(cli: Callable[..., Result], shop: Path) -> None:
    """E.g. a safety backup of a damaged database: checksums match, integrity_check does not."""
    from montero_ops.services.backups.manifest import sha256_file

    bid = backup(cli)
    folder = shop / "backups" / bid
    file = folder / "mi_sistema.db"
    data = bytearray(file.read_bytes())
    page = 4096
    for offset in range(page * 2, len(data), page):  # scribble over every page but the first two
        data[offset + 100: offset + 400] = b"\x5a" * 300
    file.write_bytes(bytes(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][0].update(size=file.stat().st_size, sha256=sha256_file(file))
    (folder / "manifest.json").write_text(json.dumps(manifest))
    before = state(shop)
    result = cli("restore", "sqlite", bid, "--yes")
    refused(result, 2, result.stderr.splitlines()[0])
    assert result.stderr.startswith(f"Error: backup {bid} is damaged: mi_sistema.db fails PRAGMA integrity_check: ")
    assert state(shop) == before


def test_backup_without_the_asked_part(cli: Callable[..., Result], shop: Path) -> None:
    bid = backup(cli)
    refused(cli("restore", "redis", bid, "--yes"), 2, f"Error: backup {bid} holds sqlite, not redis")
