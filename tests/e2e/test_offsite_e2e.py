"""Offsite copies to real servers: SeaweedFS's S3 gateway and Debian's sshd (sftp), both started
here on free loopback ports and stopped at the end; plus a fresh-host restore from S3.

The backups are of the SQLite file (no compose stack needed for what is tested here: the
repository kinds); the Docker Engine is made unreachable so nothing touches other stacks."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from seaweed import SeaweedS3, free_port, require_weed, stop, wait_port
from typer.testing import CliRunner, Result

from montero_ops.errors import DockerUnavailable
from montero_ops.services.backups import sqlite_db

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "e2e-offsite-password-0123456789"
pytestmark = pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed (scripts/setup.sh)")


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    require_weed()
    server = SeaweedS3(tmp_path_factory.mktemp("seaweed"))
    try:
        server.start()
        yield server.env()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sftp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    sshd = Path("/usr/sbin/sshd")
    if not sshd.exists():
        pytest.skip("openssh-server is not installed (scripts/setup.sh)")
    work = tmp_path_factory.mktemp("sshd")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation folder (Debian makes it at boot)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(work / name)], check=True)
    (work / "authorized_keys").write_text((work / "client.pub").read_text())
    (work / "authorized_keys").chmod(0o600)
    port = free_port()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    (work / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {work / 'host'}\nPidFile {work / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {work / 'authorized_keys'}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n")
    log = (work / "sshd.log").open("wb")
    proc = subprocess.Popen([str(sshd), "-D", "-e", "-f", str(work / "sshd_config")], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        command = (f"ssh -i {work / 'client'} -p {port} -o StrictHostKeyChecking=no "
                   f"-o UserKnownHostsFile=/dev/null -o BatchMode=yes -o LogLevel=ERROR {user}@127.0.0.1 -s sftp")
        yield {"MONTERO_OFFSITE_REPOSITORY": f"sftp:{user}@127.0.0.1:{work / 'repo'}",
               "MONTERO_OFFSITE_SFTP_COMMAND": command}
    finally:
        stop(proc)
        log.close()


class NoEngine:
    def __init__(self, *a: object, **k: object) -> None:
        pass

    def ping(self) -> None:
        raise DockerUnavailable("the Docker engine is kept out of this test")


def make_shop(root: Path, settings: dict[str, str], rows: int = 300) -> Path:
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text((ROOT / "docker" / "compose.yml").read_text())
    (root / "data").mkdir()
    db = root / "data" / "mi_sistema.db"
    subprocess.run(["sqlite3", str(db),
                    ("CREATE TABLE alembic_version (version_num TEXT PRIMARY KEY); INSERT INTO alembic_version VALUES ('head1');"
                    "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT);"
                    f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<{rows}) "
                     "INSERT INTO orders SELECT i, hex(randomblob(64)) FROM n;")], check=True)
    env = {**settings, "MONTERO_OFFSITE_PASSWORD": PASSWORD}
    (root / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return root


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Result]:
    from montero_ops.cli import app

    monkeypatch.setattr("montero_ops.dockerapi.DockerAPI", NoEngine)
    for name in ("MONTERO_BACKUP_DIR", "MONTERO_PROJECT_DIR", "MONTERO_OFFSITE_REPOSITORY", "RESTIC_PASSWORD",
                 "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RESTIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_COLOR", "1")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args), catch_exceptions=False)


def push_and_list(cli: Callable[..., Result], root: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(root)
    made = cli("backup", "sqlite", "--push", "--json")
    assert made.exit_code == 0, made.stderr
    data = json.loads(made.stdout)
    assert data["offsite"]["bytes_added"] > 0 and PASSWORD not in made.stdout + made.stderr
    listed = cli("backups", "list", "--offsite", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert data["id"] in [s["backup"] for s in json.loads(listed.stdout)]
    verified = cli("backups", "verify", "--offsite", data["id"])
    assert verified.exit_code == 0, verified.stderr
    return str(data["id"])


def test_push_to_local_path(cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path / "shop", {"MONTERO_OFFSITE_REPOSITORY": str(tmp_path / "disk" / "restic")})
    push_and_list(cli, shop, monkeypatch)
    assert (tmp_path / "disk" / "restic" / "config").is_file()


def test_push_to_sftp(cli: Callable[..., Result], sftp: dict[str, str], tmp_path: Path,
                      monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path / "shop", sftp)
    push_and_list(cli, shop, monkeypatch)
    assert (Path(sftp["MONTERO_OFFSITE_REPOSITORY"].split(":", 2)[2]) / "config").is_file()


def test_push_to_s3_and_fresh_host_restore(cli: Callable[..., Result], s3: dict[str, str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path / "shop", s3, rows=60000)  # ~10 MB: several restic chunks
    before = sqlite_db.table_checksums(shop / "data" / "mi_sistema.db")
    first = push_and_list(cli, shop, monkeypatch)
    # A second push after a one-row change sends a small fraction (restic dedup).
    subprocess.run(["sqlite3", str(shop / "data" / "mi_sistema.db"), "UPDATE orders SET note='x' WHERE id=1;"], check=True)
    again = cli("backup", "sqlite", "--push", "--json")
    assert again.exit_code == 0, again.stderr
    sent = json.loads(again.stdout)["offsite"]
    assert sent["bytes_added"] < 0.5 * sent["bytes_processed"], sent
    # The fresh host: a new project folder with the code and .env only, no ./data, no ./backups.
    fresh = tmp_path / "fresh" / "shop"
    (fresh / "docker").mkdir(parents=True)
    shutil.copy(shop / "docker" / "compose.yml", fresh / "docker" / "compose.yml")
    shutil.copy(shop / ".env", fresh / ".env")
    monkeypatch.chdir(fresh)
    restored = cli("restore", "sqlite", "--from-offsite", first, "--yes")
    assert restored.exit_code == 0, restored.stderr
    assert sqlite_db.table_checksums(fresh / "data" / "mi_sistema.db") == before
    assert (fresh / "backups" / first / "manifest.json").is_file()


def test_wrong_password_on_s3(cli: Callable[..., Result], s3: dict[str, str], tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    shop = make_shop(tmp_path / "shop", s3)
    push_and_list(cli, shop, monkeypatch)
    text = (shop / ".env").read_text().replace(PASSWORD, "wrong-one")
    (shop / ".env").write_text(text)
    before = sorted(p.name for p in (shop / "backups").iterdir())
    result = cli("backups", "push")
    assert result.exit_code == 1
    assert next(ln for ln in result.stderr.splitlines() if ln.startswith("Error:")).startswith(
        "Error: wrong password for the offsite repository")
    assert sorted(p.name for p in (shop / "backups").iterdir()) == before


def test_unreachable_s3_is_one_line_and_changes_nothing_local(
        cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 server that holds the repository goes away (its own SeaweedFS, stopped for real):
    push, list, verify and restore --from-offsite each say so in one line, exit 1, and change
    nothing local; once the server is back the same repository works."""
    require_weed()
    (tmp_path / "seaweed-down").mkdir()
    server = SeaweedS3(tmp_path / "seaweed-down")
    server.start()
    try:
        shop = make_shop(tmp_path / "shop", server.env())
        first = push_and_list(cli, shop, monkeypatch)
        db = shop / "data" / "mi_sistema.db"
        assert cli("backup", "sqlite").exit_code == 0  # a second, not yet pushed
        server.stop()
        local = sorted(p.name for p in (shop / "backups").iterdir())
        sums = sqlite_db.table_checksums(db)
        for args in (("backups", "push", "--all"), ("backups", "list", "--offsite"),
                     ("backups", "verify", "--offsite", first), ("restore", "sqlite", "--from-offsite", "--latest", "--yes")):
            result = cli(*args)
            assert result.exit_code == 1, (args, result.stderr)
            lines = [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]
            assert len(lines) == 1 and lines[0].startswith("Error: offsite repository ") and \
                lines[0].endswith(" is unreachable"), (args, result.stderr)
            assert PASSWORD not in result.stdout + result.stderr and "Traceback" not in result.stderr
            assert sorted(p.name for p in (shop / "backups").iterdir()) == local, args
            assert sqlite_db.table_checksums(db) == sums, args
        server.start()
        again = cli("backups", "push", "--all")
        assert again.exit_code == 0, again.stderr
    finally:
        server.stop()


# -- retention on the real S3 server: a planned set of dated backups --------------------------------
# (day, hour) of each planned backup, newest first. 2026-12-02 is a Wednesday (ISO week 49).
PLANNED = [("2026-12-02", 3), ("2026-12-01", 3), ("2026-11-30", 3), ("2026-11-29", 3), ("2026-11-28", 3),
           ("2026-11-22", 3), ("2026-11-15", 3), ("2026-11-08", 3), ("2026-10-31", 3), ("2026-10-15", 3),
           ("2026-09-30", 3), ("2026-08-31", 3)]
# --keep-daily 3 --keep-weekly 3 --keep-monthly 3, worked out by hand:
#   daily:   Dec 2, Dec 1, Nov 30 (the three most recent days with a backup);
#   weekly:  W49 -> Dec 2, W48 (Nov 23-29) -> Nov 29, W47 (Nov 16-22) -> Nov 22;
#   monthly: December -> Dec 2, November -> Nov 30, October -> Oct 31.
KEPT_DAYS = {"2026-12-02", "2026-12-01", "2026-11-30", "2026-11-29", "2026-11-22", "2026-10-31"}


def restic_raw_size(env: dict[str, str], shop: Path) -> int:
    """Bytes the repository really stores (restic stats --mode raw-data), asked of restic itself."""
    values = dict(line.split("=", 1) for line in (shop / ".env").read_text().splitlines() if "=" in line)
    done = subprocess.run(["restic", "stats", "--json", "--mode", "raw-data"], capture_output=True, text=True, check=True,
                          env={**env, "RESTIC_REPOSITORY": values["MONTERO_OFFSITE_REPOSITORY"], "RESTIC_PASSWORD": PASSWORD,
                               "AWS_ACCESS_KEY_ID": values["AWS_ACCESS_KEY_ID"],
                               "AWS_SECRET_ACCESS_KEY": values["AWS_SECRET_ACCESS_KEY"]})
    return int(json.loads(done.stdout)["total_size"])


def test_gfs_retention_on_s3(cli: Callable[..., Result], s3: dict[str, str], tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    from datetime import UTC, datetime

    from montero_ops.services.backups.manifest import read_manifest, write_manifest

    repo = s3["MONTERO_OFFSITE_REPOSITORY"] + f"/retention-{os.urandom(4).hex()}"
    shop = make_shop(tmp_path / "shop", {**s3, "MONTERO_OFFSITE_REPOSITORY": repo}, rows=2000)
    monkeypatch.chdir(shop)
    db = shop / "data" / "mi_sistema.db"
    ids: dict[str, str] = {}
    for day, hour in reversed(PLANNED):
        # Each day's backup holds ~1 MB of its own (new orders), so forgetting it frees real data.
        subprocess.run(["sqlite3", str(db), ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<4000) "
                                             "INSERT INTO orders (note) SELECT hex(randomblob(128)) FROM n;")], check=True)
        when = datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC)
        monkeypatch.setattr("montero_ops.services.backups.create.utc_now", lambda when=when: when)
        made = cli("backup", "sqlite", "--push", "--json")
        assert made.exit_code == 0, made.stderr
        ids[day] = json.loads(made.stdout)["id"]
        assert ids[day].startswith(day.replace("-", "") + "T0300")
    # A safety backup (what a restore leaves), newest of all, pushed too: no rule counts it.
    newest = shop / "backups" / ids["2026-12-02"]
    safety = newest.with_name(newest.name.replace("T0300", "T0301"))
    shutil.copytree(newest, safety)
    manifest = read_manifest(safety)
    manifest.id, manifest.label = safety.name, "safety"
    write_manifest(safety, manifest)
    assert cli("backups", "push", safety.name).exit_code == 0

    def offsite_ids() -> list[str]:
        listed = cli("backups", "list", "--offsite", "--json")
        assert listed.exit_code == 0, listed.stderr
        return sorted(s["backup"] for s in json.loads(listed.stdout))

    assert offsite_ids() == sorted([*ids.values(), safety.name])
    policy = ["--keep-daily", "3", "--keep-weekly", "3", "--keep-monthly", "3", "--offsite"]
    want_kept = sorted([ids[d] for d in KEPT_DAYS] + [safety.name])
    want_gone = sorted(ids[d] for d, _ in PLANNED if d not in KEPT_DAYS)

    # --dry-run: the plan, the same on both sides, and nothing deleted anywhere.
    dry = cli("backups", "prune", *policy, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert sorted(plan["delete"]) == want_gone
    assert sorted(s["backup"] for s in plan["offsite"]["delete"]) == want_gone
    assert offsite_ids() == sorted([*ids.values(), safety.name])
    assert len(list((shop / "backups").glob("2026*"))) == len(PLANNED) + 1
    stored_before = restic_raw_size(dict(os.environ), shop)

    done = cli("backups", "prune", *policy, "--yes")
    assert done.exit_code == 0, done.stderr
    assert f"{len(want_gone)} offsite (restic forget --prune)" in done.stderr
    assert offsite_ids() == want_kept
    assert sorted(p.name for p in (shop / "backups").glob("2026*")) == want_kept
    # restic prune really removed the data only the forgotten snapshots used (6 x ~1 MB of orders).
    stored_after = restic_raw_size(dict(os.environ), shop)
    assert stored_after < stored_before - 3_000_000, (stored_before, stored_after)
    # What is left is whole: restic check --read-data, then montero's checksums of the newest.
    assert cli("backups", "verify", "--offsite").exit_code == 0
    gone = cli("restore", "sqlite", "--from-offsite", ids["2026-11-28"], "--yes")
    assert gone.exit_code != 0 and "no offsite backup" in gone.stderr

    # Keep nothing by the rules: the newest verified backup (and the undo of the last restore) still stay.
    none = cli("backups", "prune", "--keep-daily", "0", "--offsite", "--yes", "--json")
    assert none.exit_code == 0, none.stderr
    assert offsite_ids() == sorted([ids["2026-12-02"], safety.name])
    assert sorted(p.name for p in (shop / "backups").glob("2026*")) == sorted([ids["2026-12-02"], safety.name])
