"""Issue 21 point 1: one writer rotates the shared log file; no line is lost; files are 0640."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from api_helpers import Gunicorn
from montero_api.logfiles import LOG_FILE, Rotator, SharedFileHandler, rotate_if_needed

PID = re.compile(r"\[(\d+)\] montero_api\.request: GET /nope/(\d+) 404")


def _log_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(LOG_FILE))


def test_four_gunicorn_workers_lose_no_line_across_rotations(gunicorn: Callable[..., Gunicorn], tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    # Small files, enough history for every line: rotations happen, nothing may be dropped.
    server = gunicorn(workers=4, LOG_DIR=str(folder), LOG_LEVEL="INFO", LOG_MAX_BYTES="20000", LOG_BACKUPS="200",
                      GUNICORN_THREADS="2", DEFAULT_RATE_LIMIT="100000 per minute")
    total = 3000
    sent = threading.local()

    def hit(index: int) -> int:
        if not hasattr(sent, "session"):
            sent.session = requests.Session()
        # A new connection each time (Connection: close), so all four workers accept some.
        return sent.session.get(f"{server.url}/nope/{index}", headers={"Connection": "close"}, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(hit, range(total)))
    assert statuses == [404] * total
    # The last lines are on disk once the workers answered (each record is flushed); give the
    # rotator one more pass so the last rotation is not half-seen.
    server.stop()

    found: dict[int, set[str]] = {}
    files = _log_files(folder)
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o640, path
        for match in PID.finditer(path.read_text()):
            found.setdefault(int(match.group(2)), set()).add(match.group(1))
    rotated = [p for p in files if p.name != LOG_FILE]
    assert len(rotated) >= 2, f"expected at least two rotations, files: {[p.name for p in files]}"
    missing = sorted(set(range(total)) - set(found))
    assert not missing, f"{len(missing)} of {total} lines lost, e.g. {missing[:5]}"
    assert all(len(pids) == 1 for pids in found.values()), "a line was written twice"
    writers = set().union(*found.values())
    assert len(writers) == 4, f"lines came from {len(writers)} workers, not 4"
    for path in rotated:
        assert path.stat().st_size <= 20000 + 200_000, "a rotated file grew far past LOG_MAX_BYTES"


def test_concurrent_rotations_from_two_replicas_keep_the_chain(tmp_path: Path) -> None:
    """Two masters (two replicas on one ./logs) asking at once rotate once, not twice."""
    path = tmp_path / LOG_FILE
    for index, text in ((2, "two\n"), (1, "one\n")):
        (tmp_path / f"{LOG_FILE}.{index}").write_text(text)
    path.write_text("current\n" * 100)
    barrier = threading.Barrier(8)
    results: list[bool] = []

    def rotate() -> None:
        barrier.wait()
        results.append(rotate_if_needed(path, 100, 5))

    threads = [threading.Thread(target=rotate) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    assert (tmp_path / f"{LOG_FILE}.1").read_text() == "current\n" * 100
    assert (tmp_path / f"{LOG_FILE}.2").read_text() == "one\n"
    assert (tmp_path / f"{LOG_FILE}.3").read_text() == "two\n"
    assert not path.exists()


def test_oldest_file_is_dropped_beyond_backups(tmp_path: Path) -> None:
    path = tmp_path / LOG_FILE
    for index in (1, 2):
        (tmp_path / f"{LOG_FILE}.{index}").write_text(f"{index}\n")
    path.write_text("x" * 50)
    assert rotate_if_needed(path, 10, 2)
    assert (tmp_path / f"{LOG_FILE}.1").read_text() == "x" * 50
    assert (tmp_path / f"{LOG_FILE}.2").read_text() == "1\n"
    assert not (tmp_path / f"{LOG_FILE}.3").exists()
    assert not rotate_if_needed(tmp_path / "absent.log", 10, 2)


def test_handler_reopens_after_rotation_and_creates_0640(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = tmp_path / LOG_FILE
        path.write_text("")
        path.chmod(0o644)  # a file from before this version
        handler = SharedFileHandler(str(path), encoding="utf-8")
        assert path.stat().st_mode & 0o777 == 0o640
        import logging

        record = logging.LogRecord("t", logging.INFO, __file__, 1, "line %s", ("a",), None)
        handler.emit(record)
        assert rotate_if_needed(path, 1, 3)
        handler.emit(logging.LogRecord("t", logging.INFO, __file__, 1, "line %s", ("b",), None))
        handler.close()
        assert (tmp_path / f"{LOG_FILE}.1").read_text() == "line a\n"
        assert path.read_text() == "line b\n" and path.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)


def test_rotator_thread_tightens_old_files_and_rotates(tmp_path: Path) -> None:
    path = tmp_path / LOG_FILE
    (tmp_path / f"{LOG_FILE}.1").write_text("old\n")
    (tmp_path / f"{LOG_FILE}.1").chmod(0o644)
    path.write_text("y" * 100)
    rotator = Rotator(path, 10, 3, interval=0.05)
    rotator.start()
    try:
        deadline = threading.Event()
        for _ in range(100):
            if rotator.rotations:
                break
            deadline.wait(0.05)
    finally:
        rotator.stop()
        rotator.join(timeout=5)
    assert rotator.rotations == 1
    assert (tmp_path / f"{LOG_FILE}.2").read_text() == "old\n"
    assert (tmp_path / f"{LOG_FILE}.2").stat().st_mode & 0o777 == 0o640
