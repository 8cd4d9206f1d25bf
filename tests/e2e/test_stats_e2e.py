"""`montero stats` on a real engine: two app replicas under load, Redis, one snapshot as JSON with
numbers for every container, and the live view in a real pseudo-terminal (tmux) that refreshes in
place and ends on Ctrl-C with exit code 130 and no traceback."""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="module")
def loaded_stack(module_stack_project: Any) -> Iterator[Any]:
    stack = module_stack_project
    stack.secret_key = secrets.token_hex(32)
    stack.write_env(SECRET_KEY=stack.secret_key)
    done = stack.compose("up", "-d", "--wait", "--wait-timeout", "240", "--scale", "app=2", timeout=600)
    if done.returncode != 0:
        pytest.fail(f"compose up failed:\n{done.stderr[-2000:]}\n{stack.logs()}", pytrace=False)
    urls = [stack.url("/health", index=i) for i in (1, 2)]
    stop = threading.Event()

    def load(url: str) -> None:
        while not stop.is_set():
            try:
                urllib.request.urlopen(url, timeout=5).read()
            except OSError:
                time.sleep(0.05)

    threads = [threading.Thread(target=load, args=(u,), daemon=True) for u in urls]
    for t in threads:
        t.start()
    try:
        yield stack
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)


def test_stats_once_json_has_numbers_for_every_container(loaded_stack: Any) -> None:
    done = loaded_stack.run_montero("stats", "--once", "--json", timeout=120)
    assert done.returncode == 0, done.stderr
    snapshot = json.loads(done.stdout)
    ps = loaded_stack.compose("ps", "-q")
    assert len(snapshot["containers"]) == len(ps.stdout.split()) == 3
    for c in snapshot["containers"]:
        assert c["state"] == "running", c
        assert c["health"] == "healthy", c
        assert isinstance(c["cpu_percent"], float), c
        assert c["memory_bytes"] > 0 and c["memory_limit_bytes"] >= c["memory_bytes"], c
        assert c["net_rx_bytes"] > 0 and c["net_tx_bytes"] > 0, c
        assert c["restarts"] == 0, c
    apps = [c for c in snapshot["containers"] if c["service"] == "app"]
    assert len(apps) == 2
    for c in apps:
        t = c["traffic"]
        assert t["requests_per_s"] > 1, t  # the load loop hits both replicas
        assert t["p50_ms"] > 0 and t["p99_ms"] >= t["p50_ms"], t
        assert t["error_rate"] == 0.0 and t["rate_limited_per_s"] == 0.0, t
    total = snapshot["app"]["requests_per_s"]
    assert total == pytest.approx(sum(c["traffic"]["requests_per_s"] for c in apps), rel=0.25)
    redis = snapshot["redis"]
    assert redis["error"] is None
    assert redis["maxmemory_bytes"] == 256 * 1024 * 1024
    assert 0 < redis["used_memory_bytes"] < redis["maxmemory_bytes"]
    assert redis["connected_clients"] >= 1 and redis["evicted_keys"] == 0
    assert loaded_stack.secret_key not in done.stdout


def _pane(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-S", "-200", "-t", session],
                          capture_output=True, text=True, timeout=10, check=False).stdout


def test_stats_live_view_refreshes_and_ctrl_c_exits_130(loaded_stack: Any, tmp_path: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed (scripts/setup.sh installs it)", pytrace=False)
    session = f"stats-{loaded_stack.name}"
    rc_file = tmp_path / "rc"
    cmd = [sys.executable, "-m", "montero_ops", "--project-dir", str(loaded_stack.root), "stats", "--interval", "1"]
    script = f"{shlex.join(cmd)}; echo $? > {shlex.quote(str(rc_file))}; sleep 60"
    env = {k: v for k, v in loaded_stack.env.items() if k != "NO_COLOR"}
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "220", "-y", "50", script],
                   env=env, check=True, timeout=20)
    try:
        deadline = time.monotonic() + 60
        screens: list[str] = []
        while time.monotonic() < deadline and len(set(screens)) < 3:
            screen = _pane(session)
            if "REQ/S" in screen and (not screens or screen != screens[-1]):
                screens.append(screen)
            time.sleep(0.5)
        assert len(set(screens)) >= 3, f"the view did not refresh:\n{screens[-1] if screens else _pane(session)}"
        # Refreshed in place: one header on the screen, not one per refresh.
        assert screens[-1].count("REQ/S") == 1, screens[-1]
        subprocess.run(["tmux", "send-keys", "-t", session, "C-c"], check=True, timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not rc_file.exists():
            time.sleep(0.2)
        assert rc_file.exists(), _pane(session)
        assert rc_file.read_text().strip() == "130", _pane(session)
        final = _pane(session)
        assert "Traceback" not in final, final
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10, check=False)
