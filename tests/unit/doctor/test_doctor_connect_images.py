"""connect.*, images.app: probes inside the app container (faked Engine exec), real folder ownership."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from doctor_helpers import DoctorEngine, make_ctx, make_db, needs_root, project_of

from montero_ops.project import default_app_image
from montero_ops.services.doctor.connectivity import check_connectivity
from montero_ops.services.doctor.images import BUILD_ONLY, REBUILD, check_images, parse_created
from montero_ops.services.sources import LABEL, sources_digest

REDIS_ENV = ["RATELIMIT_STORAGE_URL=redis://redis:6379/0", "PATH=/opt/venv/bin:/usr/bin"]


def _by_id(findings: list) -> dict:
    return {f.id: f for f in findings}


@pytest.fixture
def app_owned(root: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("changing file ownership needs root")
    for folder in (root / "data", root / "logs"):
        os.chown(folder, 1000, 1000)
    return root


def test_redis_reachable_passes(app_owned: Path, engine: DoctorEngine) -> None:
    engine.add("app", env=REDIS_ENV)
    engine.add("redis")
    found = _by_id(check_connectivity(make_ctx(app_owned, engine)))
    assert found["connect.redis"].status.value == "pass"
    probe = engine.execs[0]
    assert probe[:2] == ["python", "-c"] and probe[-2:] == ["redis", "6379"]


def test_redis_unreachable_fails_and_says_start_it(app_owned: Path, engine: DoctorEngine) -> None:
    engine.add("app", env=REDIS_ENV)
    engine.add("redis", running=False, exit_code=0)
    engine.on_exec(
        lambda cmd: cmd[0] == "python", 1, "Traceback ...\nsocket.gaierror: [Errno -2] Name or service not known\n"
    )
    finding = _by_id(check_connectivity(make_ctx(app_owned, engine)))["connect.redis"]
    assert finding.status.value == "fail"
    assert "cannot reach Redis at redis:6379" in finding.message and "Name or service not known" in finding.message
    assert finding.fix == "montero start redis"


def test_redis_probe_falls_back_to_python3(app_owned: Path, engine: DoctorEngine) -> None:
    engine.add("app", env=REDIS_ENV)
    engine.add("redis")
    engine.on_exec(lambda cmd: cmd[0] == "python", 127, "exec: python: executable file not found in $PATH")
    assert _by_id(check_connectivity(make_ctx(app_owned, engine)))["connect.redis"].status.value == "pass"
    assert [c[0] for c in engine.execs[:2]] == ["python", "python3"]


def test_redis_not_configured_passes_and_app_down_skips(app_owned: Path, engine: DoctorEngine) -> None:
    engine.add("app", env=[])
    assert _by_id(check_connectivity(make_ctx(app_owned, engine)))["connect.redis"].status.value == "pass"
    assert _by_id(check_connectivity(make_ctx(app_owned, DoctorEngine())))["connect.redis"].status.value == "skip"


def test_data_owned_by_app_user_passes(app_owned: Path) -> None:
    make_db(app_owned / "data" / "mi_sistema.db")
    os.chown(app_owned / "data" / "mi_sistema.db", 1000, 1000)
    finding = _by_id(check_connectivity(make_ctx(app_owned)))["connect.data_writable"]
    assert finding.status.value == "pass"


@needs_root
def test_data_owned_by_root_fails_with_chown(root: Path) -> None:
    data = root / "data"
    os.chown(data, 0, 0)
    data.chmod(0o755)
    finding = _by_id(check_connectivity(make_ctx(root)))["connect.data_writable"]
    assert finding.status.value == "fail"
    assert "uid 0:gid 0, mode 0755" in finding.message
    assert finding.fix == "sudo chown -R 1000:1000 data logs"
    assert finding.repair is not None and not finding.repair.safe
    finding.repair.apply()
    assert data.stat().st_uid == 1000
    assert _by_id(check_connectivity(make_ctx(root)))["connect.data_writable"].status.value == "pass"


@needs_root
def test_database_file_owned_by_root_fails(app_owned: Path) -> None:
    db = make_db(app_owned / "data" / "mi_sistema.db")
    os.chown(db, 0, 0)
    db.chmod(0o644)
    finding = _by_id(check_connectivity(make_ctx(app_owned)))["connect.data_writable"]
    assert finding.status.value == "fail" and "mi_sistema.db" in finding.message


def test_container_probe_has_the_last_word(app_owned: Path, engine: DoctorEngine) -> None:
    engine.add("app", env=REDIS_ENV)
    engine.on_exec(lambda cmd: cmd[0] == "sh", 1)
    finding = _by_id(check_connectivity(make_ctx(app_owned, engine)))["connect.data_writable"]
    assert finding.status.value == "fail" and "cannot write /app/data" in finding.message


@needs_root
def test_container_gone_mid_probe_falls_back_to_the_host_view(root: Path, engine: DoctorEngine) -> None:
    from montero_ops.errors import DockerUnavailable

    engine.add("app", env=REDIS_ENV)
    engine.exec_error = DockerUnavailable(
        "Docker Engine API error 409: Container abc is restarting, wait until the container is running"
    )
    os.chown(root / "data", 0, 0)
    (root / "data").chmod(0o755)
    found = _by_id(check_connectivity(make_ctx(root, engine)))
    assert found["connect.redis"].status.value == "skip"
    assert found["connect.data_writable"].status.value == "fail" and "uid 0" in found["connect.data_writable"].message


def test_missing_data_folder_warns(root: Path) -> None:
    (root / "data").rmdir()
    finding = _by_id(check_connectivity(make_ctx(root)))["connect.data_writable"]
    assert finding.status.value == "warn" and "mkdir -p data logs" in finding.fix


# -- images --------------------------------------------------------------------------------------


def _app_image(root: Path) -> str:
    return default_app_image(project_of(root).name)


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")


def test_parse_created_nanoseconds() -> None:
    assert parse_created("2026-11-28T04:20:00.123456789Z") == datetime(2026, 11, 28, 4, 20, 0, 123456, UTC)


def test_image_newer_than_sources_passes(root: Path, engine: DoctorEngine) -> None:
    engine.images[_app_image(root)] = {"Id": "sha256:app", "Created": _stamp(time.time() + 60)}
    [finding] = check_images(make_ctx(root, engine))
    assert finding.status.value == "pass"


def test_image_older_than_requirements_warns(root: Path, engine: DoctorEngine) -> None:
    engine.images[_app_image(root)] = {"Id": "sha256:app", "Created": _stamp(time.time() - 3600)}
    (root / "backend" / "requirements.txt").write_text("flask==3.0.3\n")
    [finding] = check_images(make_ctx(root, engine))
    assert finding.status.value == "warn"
    assert "backend/requirements.txt changed" in finding.message
    # Nothing runs: building is all it takes (deploy would refuse a stopped stack).
    assert finding.fix == BUILD_ONLY and finding.fix.startswith("montero build app ")


def test_image_not_built_warns(root: Path, engine: DoctorEngine) -> None:
    [finding] = check_images(make_ctx(root, engine))
    assert finding.status.value == "warn" and finding.fix == "montero build app"


def test_container_on_older_build_warns(root: Path, engine: DoctorEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTERO_APP_IMAGE", "shop-app:dev")
    engine.images["shop-app:dev"] = {"Id": "sha256:new", "Created": _stamp(time.time() + 60)}
    engine.add("app", image="sha256:old")
    [finding] = check_images(make_ctx(root, engine))
    assert finding.status.value == "warn" and "older build" in finding.message


def test_stale_image_fails_in_production(root: Path, engine: DoctorEngine) -> None:
    engine.images[_app_image(root)] = {"Id": "sha256:app", "Created": _stamp(time.time() - 3600)}
    (root / "backend" / "wsgi.py").write_text("app = None\n")
    [finding] = check_images(make_ctx(root, engine, production=True))
    assert finding.status.value == "fail" and "backend/wsgi.py" in finding.message


# -- images.app by content (issue 21 point 5) ----------------------------------------------------


def _labelled(root: Path, engine: DoctorEngine, digest: str, created: float) -> None:
    engine.images[_app_image(root)] = {"Id": "sha256:app", "Created": _stamp(created),
                                       "Config": {"Labels": {LABEL: digest}}}


def test_restored_identical_sources_pass_whatever_their_times(root: Path, engine: DoctorEngine) -> None:
    """Byte-identical code with new file times (a restore, a checkout) is not stale."""
    wsgi = root / "backend" / "wsgi.py"
    wsgi.write_text("app = None\n")
    os.utime(wsgi, (time.time() - 7200, time.time() - 7200))
    _labelled(root, engine, sources_digest(root), time.time() - 3600)
    wsgi.write_text("app = None\n")  # restored: same bytes, file time now (after the build)
    [finding] = check_images(make_ctx(root, engine, production=True))
    assert finding.status.value == "pass" and "compared by content" in finding.message


def test_changed_content_fails_in_production_and_names_the_zero_downtime_path(root: Path, engine: DoctorEngine) -> None:
    _labelled(root, engine, sources_digest(root), time.time() + 3600)  # image "newer" by time
    engine.add("app", image="sha256:app")  # the stack serves: the fix must not take it down
    (root / "backend" / "requirements.txt").write_text("flask==3.0.3\n")
    [finding] = check_images(make_ctx(root, engine, production=True))
    assert finding.status.value == "fail" and "other sources than the checkout" in finding.message
    # Issue 21 point 5: the releases path (health-gated, one replica at a time, rolls back), never up --build.
    assert finding.fix == REBUILD and finding.fix.startswith("montero deploy ")
    assert "up --build" not in finding.fix


def test_stale_image_by_time_on_a_running_stack_names_deploy(root: Path, engine: DoctorEngine) -> None:
    engine.images[_app_image(root)] = {"Id": "sha256:app", "Created": _stamp(time.time() - 3600)}
    engine.add("app", image="sha256:app")
    (root / "backend" / "wsgi.py").write_text("app = None\n")
    [finding] = check_images(make_ctx(root, engine))
    assert finding.status.value == "warn" and finding.fix == REBUILD


def test_digest_ignores_what_docker_ignores(root: Path) -> None:
    before = sources_digest(root)
    (root / "backend" / "__pycache__").mkdir(exist_ok=True)
    (root / "backend" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    (root / "backend" / "tests").mkdir(exist_ok=True)
    (root / "backend" / "tests" / "test_x.py").write_text("x = 1\n")
    (root / "backend" / "app.log").write_text("line\n")
    assert sources_digest(root) == before
    (root / "backend" / "new_module.py").write_text("x = 1\n")
    assert sources_digest(root) != before


def test_containers_on_an_older_build_are_replaced_one_at_a_time(root: Path, engine: DoctorEngine) -> None:
    _labelled(root, engine, sources_digest(root), time.time())
    engine.add("app", image="sha256:old")
    [finding] = check_images(make_ctx(root, engine))
    assert finding.status.value == "warn" and finding.fix.startswith("montero restart --rolling")
