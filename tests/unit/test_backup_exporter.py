"""docker/monitoring/backup_exporter.py (the monitoring profile's `backup-exporter`) on a real folder of
backups written with montero's own manifest code, and over real HTTP: what Prometheus scrapes is the
newest complete regular backup; safety backups, interrupted `.partial-*` folders and damaged manifests
are counted apart and never make the folder look fresh."""

from __future__ import annotations

import importlib.util
import socket
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client.parser import text_string_to_metric_families

from montero_ops.services.backups.manifest import REQUIRED_KEYS, FileEntry, Manifest, backup_id, write_manifest

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "monitoring" / "backup_exporter.py"
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def load_exporter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("backup_exporter", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


exporter = load_exporter()


def make_backup(root: Path, when: datetime, label: str = "manual") -> Path:
    folder = root / backup_id(when, "montero", ["sqlite"])
    folder.mkdir(parents=True)
    (folder / "mi_sistema.db").write_bytes(b"x")
    write_manifest(folder, Manifest(id=folder.name, created_at=when.isoformat(), montero_version="test",
                                    project="montero", contents=["sqlite"], label=label,
                                    files=[FileEntry("mi_sistema.db", "sqlite", 1, "0" * 64)]))
    return folder


def test_exporter_requires_no_key_montero_does_not_write() -> None:
    assert set(exporter.REQUIRED) <= set(REQUIRED_KEYS)


def test_newest_regular_backup_wins_and_the_rest_is_counted(tmp_path: Path) -> None:
    make_backup(tmp_path, NOW - timedelta(days=3))
    make_backup(tmp_path, NOW - timedelta(hours=2))
    make_backup(tmp_path, NOW - timedelta(minutes=5), label="safety")  # newer, but not the schedule's
    (tmp_path / ".partial-20261202T115900Z-1234").mkdir()
    broken = tmp_path / "20261202T090000Z_montero_sqlite"
    broken.mkdir()
    (broken / "manifest.json").write_text("{ not json", encoding="utf-8")
    (tmp_path / "20261202T110000Z_montero_redis").mkdir()  # a name being claimed: no manifest yet

    found = exporter.scan(tmp_path)

    assert found == {"readable": 1, "newest": (NOW - timedelta(hours=2)).timestamp(), "complete": 2,
                     "partial": 1, "unreadable": 1}


def test_empty_missing_and_unreadable_folders(tmp_path: Path) -> None:
    assert exporter.scan(tmp_path)["newest"] == 0  # no backup: the age is "since 1970", so it alerts
    missing = exporter.scan(tmp_path / "nowhere")
    assert missing["readable"] == 0 and missing["newest"] == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setattr(exporter, "BACKUPS", tmp_path)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), exporter.Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        text = response.read().decode()
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples}


def test_every_scrape_reads_the_folder_again(served: str, tmp_path: Path) -> None:
    before = scrape(served)
    assert before["montero_backup_newest_timestamp_seconds"] == 0
    assert before["montero_backup_dir_readable"] == 1
    make_backup(tmp_path, NOW)
    after = scrape(served)
    assert after["montero_backup_newest_timestamp_seconds"] == NOW.timestamp()
    assert after["montero_backups"] == 1
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(served + "/", timeout=5)
    assert err.value.code == 404
