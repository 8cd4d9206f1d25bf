"""Replication (replicate profile): settings, time arguments, the daemon's lag, status, doctor and the
restore --to-time refusals. The Engine is faked at its API; the entrypoint script is run for real with
a stand-in `litestream` that prints what it would be given."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent / "doctor"))
from doctor_helpers import DoctorEngine, make_ctx

from montero_ops.errors import UsageError
from montero_ops.project import find_project
from montero_ops.services import replication
from montero_ops.services.doctor.replication import check_replication

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 16, 0, 0, tzinfo=UTC)
ENV = "MONTERO_OFFSITE_REPOSITORY=s3:http://127.0.0.1:8333/shop-backups\nAWS_ACCESS_KEY_ID=key-id-1\n" \
      "AWS_SECRET_ACCESS_KEY=very-secret-value-42\n"


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("MONTERO_OFFSITE_REPOSITORY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MONTERO_REPLICATION_PATH",
                 "AWS_DEFAULT_REGION", "MONTERO_PROJECT_DIR", "COMPOSE_PROJECT_NAME"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "shop"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text("services: {}\n")
    (root / "data").mkdir()
    (root / ".env").write_text(ENV)
    return root


@pytest.mark.parametrize(("repo", "endpoint", "bucket"), [
    ("s3:http://127.0.0.1:8333/shop-backups", "http://127.0.0.1:8333", "shop-backups"),
    ("s3:https://s3.example.com/bkt/restic/prefix", "https://s3.example.com", "bkt"),
    ("s3:s3.amazonaws.com/bkt", "https://s3.amazonaws.com", "bkt"),
])
def test_repository_forms_and_the_entrypoint_agree(repo: str, endpoint: str, bucket: str, tmp_path: Path) -> None:
    assert replication.parse_repository(repo) == (endpoint, bucket)
    # docker/replicate/replicate.sh derives the same, with the real sh; `litestream` stands in.
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "litestream").write_text('#!/bin/sh\necho "$MONTERO_REPLICATE_ENDPOINT $MONTERO_REPLICATE_BUCKET '
                                     '$MONTERO_REPLICATE_PATH ${AWS_CA_BUNDLE:-unset} $*"\n')
    (stub / "litestream").chmod(0o755)
    env = {"PATH": f"{stub}:{os.environ['PATH']}", "MONTERO_OFFSITE_REPOSITORY": repo, "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "MONTERO_REPLICATION_PATH": "litestream/shop/mi_sistema.db",
           "AWS_CA_BUNDLE": "/etc/ca.pem"}
    done = subprocess.run(["sh", str(REPO / "docker" / "replicate" / "replicate.sh")], env=env, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [endpoint, bucket, "litestream/shop/mi_sistema.db", "unset", "replicate",
                                   "-config", "/etc/montero/litestream.yml"]


@pytest.mark.parametrize(("repo", "message"), [
    ("", "MONTERO_OFFSITE_REPOSITORY is not set"),
    ("sftp:u@h:/srv/repo", "must be an s3: repository"),
    ("s3:http://127.0.0.1:8333", "names no bucket"),
])
def test_entrypoint_refuses_what_cannot_replicate(repo: str, message: str) -> None:
    done = subprocess.run(["sh", str(REPO / "docker" / "replicate" / "replicate.sh")], capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "MONTERO_OFFSITE_REPOSITORY": repo, "AWS_ACCESS_KEY_ID": "k",
                               "AWS_SECRET_ACCESS_KEY": "s", "MONTERO_REPLICATION_PATH": "p"}, check=False)
    assert done.returncode == 2 and message in done.stderr, done.stderr


def test_target_from_env_file_with_its_own_path(shop: Path) -> None:
    tgt = replication.target(find_project(shop))
    assert (tgt.endpoint, tgt.bucket, tgt.path, tgt.region) == ("http://127.0.0.1:8333", "shop-backups",
                                                               "litestream/shop/mi_sistema.db", "us-east-1")
    assert "very-secret-value-42" not in repr(tgt) + tgt.shown + json.dumps(tgt.to_dict())
    # The config file litestream gets holds no credential.
    assert "very-secret-value-42" not in replication._config_text(tgt, shop / "data" / "mi_sistema.db")


@pytest.mark.parametrize(("env", "message"), [
    ("", "no offsite S3 target configured for replication"),
    ("MONTERO_OFFSITE_REPOSITORY=/srv/restic\n", "not an s3: repository"),
    ("MONTERO_OFFSITE_REPOSITORY=s3:http://h/b\nAWS_ACCESS_KEY_ID=k\n", "AWS_SECRET_ACCESS_KEY not set"),
])
def test_target_refuses_incomplete_settings(shop: Path, env: str, message: str) -> None:
    (shop / ".env").write_text(env)
    with pytest.raises(UsageError) as info:
        replication.target(find_project(shop))
    assert message in info.value.message


@pytest.mark.parametrize(("text", "expected"), [
    ("latest", None),
    ("10m ago", NOW - timedelta(minutes=10)),
    ("90s ago", NOW - timedelta(seconds=90)),
    ("2 hours ago", NOW - timedelta(hours=2)),
    ("1d ago", NOW - timedelta(days=1)),
    ("2026-12-02T15:30:00Z", datetime(2026, 12, 2, 15, 30, tzinfo=UTC)),
    ("2026-12-02T10:30:00-05:00", datetime(2026, 12, 2, 15, 30, tzinfo=UTC)),
])
def test_parse_time(text: str, expected: datetime | None) -> None:
    assert replication.parse_time(text, NOW) == expected


@pytest.mark.parametrize(("text", "message"), [
    ("yesterday", "invalid time 'yesterday'"),
    ("2026-12-02T15:30:00", "has no time zone"),
    ("2026-12-03T00:00:00Z", "is in the future"),
])
def test_parse_time_refuses(text: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        replication.parse_time(text, NOW)
    assert message in info.value.message


def _listed(at: datetime) -> str:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    return json.dumps({"databases": [{"path": "/app/data/mi_sistema.db", "status": "replicating",
                                      "last_sync_at": stamp}]})


def test_status_absent_down_and_lagging(shop: Path) -> None:
    project = find_project(shop)
    engine = DoctorEngine(project.name)
    db = shop / "data" / "mi_sistema.db"
    assert replication.status(project, engine, db, probe_replica=False, now=NOW).to_dict()["enabled"] is False  # type: ignore[arg-type]
    engine.add("replicate", health="healthy")
    engine.on_exec(lambda cmd: cmd[:2] == ["litestream", "list"], 0, _listed(NOW - timedelta(seconds=75)))
    st = replication.status(project, engine, db, probe_replica=False, now=NOW)  # type: ignore[arg-type]
    assert (st.service, st.lag_seconds, st.ok) == ("healthy", 74.9, False)
    assert st.problems == ["replication lags 75 s behind the database (limit 60 s)"]
    down = DoctorEngine(project.name)
    down.add("replicate", running=False, health=None, exit_code=2)
    st = replication.status(project, down, db, probe_replica=False, now=NOW)  # type: ignore[arg-type]
    assert st.service == "down" and st.problems == ["the replicate service is down: changes are not being replicated"]


def test_last_log_error_is_cleared_by_a_recovery() -> None:
    failing = ('time=2026-12-02T16:32:52.089Z level=ERROR msg="sync error" db=mi_sistema.db '
               'error="put object: dial tcp 127.0.0.1:8333: connect: connection refused" consecutive_errors=1')
    assert replication.last_log_error(failing) == \
        "2026-12-02T16:32:52.089Z sync error: put object: dial tcp 127.0.0.1:8333: connect: connection refused"
    recovered = failing + '\ntime=2026-12-02T16:33:08.110Z level=INFO msg="sync recovered" previous_errors=4'
    assert replication.last_log_error(recovered) is None


def test_doctor_passes_in_sync_fails_lag_and_down(tmp_path: Path) -> None:
    from doctor_helpers import project_of

    root = tmp_path / "shop"
    (root / "docker").mkdir(parents=True)
    (root / "docker" / "compose.yml").write_text("services: {}\n")
    engine = DoctorEngine()
    assert check_replication(make_ctx(root, engine)) == []  # profile off
    engine.add("replicate")
    recent = datetime.now(UTC) - timedelta(seconds=1)
    engine.on_exec(lambda cmd: True, 0, _listed(recent))
    [ok] = check_replication(make_ctx(root, engine))
    assert (ok.id, ok.status.value) == ("replication.lag", "pass")
    slow = DoctorEngine()
    slow.add("replicate", logs='time=x level=ERROR msg="sync error" error="dial tcp: connection refused"')
    slow.on_exec(lambda cmd: True, 0, _listed(datetime.now(UTC) - timedelta(seconds=90)))
    [lag] = check_replication(make_ctx(root, slow))
    assert (lag.id, lag.status.value) == ("replication.lag", "fail") and "limit 60 s" in lag.message
    assert lag.detail == ["x sync error: dial tcp: connection refused"]
    down = DoctorEngine()
    down.add("replicate", running=False, health=None)
    [fail] = check_replication(make_ctx(root, down))
    assert (fail.id, fail.status.value) == ("replication.service", "fail") and "is down" in fail.message
    assert project_of(root).name == "shop"


def test_restore_to_time_refusals_change_nothing(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from montero_ops.cli import app

    monkeypatch.chdir(shop)
    runner = CliRunner()
    cases = [
        (["restore", "redis", "--to-time", "latest", "--yes"], "--to-time restores the SQLite database, not redis"),
        (["restore", "--latest", "--to-time", "latest", "--yes"], "--to-time restores from the replica"),
        (["restore", "--to-time", "soon", "--yes"], "invalid time 'soon'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert message in result.stderr
    assert not (shop / "backups").exists() and list((shop / "data").iterdir()) == []


def test_up_replicate_without_settings_is_one_line(shop: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from montero_ops.cli import app

    (shop / ".env").write_text("SECRET_KEY=x\n")
    monkeypatch.chdir(shop)
    result = CliRunner().invoke(app, ["up", "--profile", "replicate"])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[0] == "Error: no offsite S3 target configured for replication"


def test_compose_file_keeps_credentials_out_of_the_image() -> None:
    import yaml

    spec = yaml.safe_load((REPO / "docker" / "compose.replicate.yml").read_text())["services"]["replicate"]
    assert spec["profiles"] == ["replicate"] and spec["read_only"] is True and spec["cap_drop"] == ["ALL"]
    assert spec["environment"]["AWS_SECRET_ACCESS_KEY"] == "${AWS_SECRET_ACCESS_KEY:-}"
    dockerfile = (REPO / "docker" / "replicate" / "Dockerfile").read_text()
    assert "AWS_" not in dockerfile and "ENV " not in dockerfile
    assert "secret-access-key" not in (REPO / "docker" / "replicate" / "litestream.yml").read_text()
