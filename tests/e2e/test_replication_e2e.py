"""Continuous replication on the real engine: `montero up --profile replicate` runs Litestream against
the app's SQLite file, replicating to a real SeaweedFS S3 gateway (tests/e2e/seaweed.py, the server of
the offsite tests) while writers insert through the API. One stack for the module, steps in order:

1. the replica's lag stays under 5 s under writes, and every committed row reaches the replica;
2. `restore --to-time T` between two known writes gives exactly the rows committed before T;
3. S3 down for 30 s: the app keeps serving, status shows the error, replication catches up, no loss;
   the replicate service stopped: doctor fails (replication.service);
4. ./data removed with the stack down (a lost host): `restore --to-time latest` with only .env and
   the code brings back every committed row, and the restored stack replicates again.

MONTERO_BENCH_REPLICATION=1 adds the figures of docs/benchmarks.md (figure 15).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from conftest import APP_IMAGE, StackProject, _port_free
from seaweed import SeaweedS3, require_weed

pytestmark = [pytest.mark.skipif(shutil.which("restic") is None, reason="restic is not installed (scripts/setup.sh)"),
              pytest.mark.lane2]  # ~3 min: beside the cluster tests (scripts/test.sh)
TAG = APP_IMAGE.rsplit(":", 1)[-1]
PASSWORD = "e2e-" + secrets.token_hex(8)


def api(url: str, method: str = "GET", body: dict[str, Any] | None = None, token: str | None = None,
        timeout: float = 15) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")


@dataclass
class Writers:
    """Threads inserting clients through the API; each 201 is recorded with the time it came back."""

    base: str
    token: str
    rate: float | None = None  # per writer per second; None = as fast as it goes
    threads: int = 2
    committed: list[tuple[str, float]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _pool: list[threading.Thread] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=lambda: iter(range(10**9)))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _run(self, prefix: str) -> None:
        while not self._stop.is_set():
            with self._lock:
                n = next(self._seq)
            name = f"{prefix}-{n}"
            started = time.monotonic()
            try:
                code, body = api(f"{self.base}/api/clients", "POST", {"name": name, "nit": f"{int(time.time())}{n}"},
                                 self.token)
            except OSError as exc:  # refused, reset, timed out: the app did not serve this write
                code, body = 0, exc
            if code == 201:
                with self._lock:
                    self.committed.append((name, time.time()))
            else:
                self.failures.append(f"{code} {str(body)[:120]}")
            if self.rate:
                time.sleep(max(0.0, 1 / self.rate - (time.monotonic() - started)))

    def start(self, prefix: str) -> Writers:
        self._stop.clear()
        self._pool = [threading.Thread(target=self._run, args=(f"{prefix}{i}",), daemon=True)
                      for i in range(self.threads)]
        for t in self._pool:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._pool:
            t.join(timeout=30)


@dataclass
class Rig:
    stack: StackProject
    s3: SeaweedS3
    token: str

    @property
    def base(self) -> str:
        # Asked each time: a restarted app may get another port of MONTERO_APP_PORTS' range.
        return self.stack.url("")

    def montero(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return self.stack.run_montero(*args, timeout=timeout)

    def status(self) -> tuple[int, dict[str, Any]]:
        done = self.montero("replication", "status", "--json", timeout=120)
        assert done.stdout.strip(), done.stderr
        return done.returncode, dict(json.loads(done.stdout))

    def wait_synced(self, timeout: float = 60) -> dict[str, Any]:
        """Until the replica holds what Litestream has seen locally, with the daemon in sync."""
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            code, last = self.status()
            if code == 0 and last["lag_seconds"] is not None and last["lag_seconds"] < 2 \
                    and last["replica_txid"] and last["replica_txid"] == last["local_txid"]:
                return last
            time.sleep(1)
        raise AssertionError(f"replica not in sync after {timeout} s: {last}")

    def replica_names(self, tmp: Path) -> set[str]:
        """Every client name in the replica's newest state (the host's litestream, as restore uses it)."""
        from montero_ops.services import replication

        out = tmp / f"replica-{time.monotonic_ns()}.db"
        env_before = dict(os.environ)
        os.environ.update({k: v for k, v in self.stack.env.items() if k.startswith(("MONTERO_", "AWS_", "COMPOSE_"))})
        try:
            from montero_ops.project import find_project

            project = find_project(self.stack.root)
            replication.restore_copy(replication.target(project), self.db, out, None)
        finally:
            os.environ.clear()
            os.environ.update(env_before)
        return names_in(out)

    def assert_replicated(self, names: set[str], tmp: Path, timeout: float = 30) -> None:
        """Every name reaches the replica: the last second of writes may still be on its way
        (Litestream reads the WAL once a second), so ask again until the bound."""
        deadline = time.monotonic() + timeout
        while True:
            missing = names - self.replica_names(tmp)
            if not missing:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(missing)} committed rows never reached the replica: {sorted(missing)[:5]}")
            time.sleep(1)

    @property
    def db(self) -> Path:
        return self.stack.root / "data" / "mi_sistema.db"


def names_in(db: Path) -> set[str]:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {str(r[0]) for r in con.execute("SELECT name FROM clients")}
    finally:
        con.close()


def login(base: str) -> str:
    status, body = api(f"{base}/api/auth/login", "POST", {"email": "ops@example.com", "password": PASSWORD})
    assert status == 200, body
    return str(body["token"])


@pytest.fixture(scope="module")
def rig(module_stack_project: StackProject, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_weed()
    stack = module_stack_project
    s3 = SeaweedS3(tmp_path_factory.mktemp("seaweed-replication"))
    s3.start()
    try:
        stack.write_env(SECRET_KEY=secrets.token_hex(32), DEFAULT_RATE_LIMIT="1000000 per minute",
                        MONTERO_REPLICATE_IMAGE=f"montero-replicate:{TAG}", MONTERO_OFFSITE_PASSWORD=PASSWORD,
                        **s3.env())
        # The bucket exists as it does for a user whose offsite backups already run (restic creates it).
        init = subprocess.run(["restic", "init"], check=False, capture_output=True, text=True, timeout=120, env={
            **os.environ, "RESTIC_REPOSITORY": s3.env()["MONTERO_OFFSITE_REPOSITORY"], "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(stack.root / ".restic-cache"), **s3.env()})
        assert init.returncode == 0, init.stderr
        # App ports below the ephemeral range (32768+): the restores restart the app, and a writer's
        # outgoing connection may hold a port of a range in that zone at that moment (bind: in use).
        low = next(p for p in range(20000 + secrets.randbelow(1000) * 10, 32000, 10)
                   if all(_port_free(q) for q in range(p, p + 10)))
        stack.env["MONTERO_APP_PORTS"] = f"{low}-{low + 9}"
        stack.app_ports = (low, low + 9)
        stack.compose_files.append(stack.root / "docker" / "compose.replicate.yml")
        stack.profiles.append("replicate")  # the fixture's `down -v` removes it too
        up = stack.run_montero("up", "--profile", "replicate", timeout=900)
        assert up.returncode == 0, up.stderr[-3000:] + stack.logs()
        made = stack.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email",
                             "ops@example.com", "--password", PASSWORD, "--name", "Ops")
        assert made.returncode == 0, made.stderr
        yield Rig(stack, s3, login(stack.url("")))
    finally:
        s3.stop()


def test_lag_stays_under_5s_while_writing(rig: Rig, tmp_path: Path) -> None:
    writers = Writers(rig.base, rig.token, threads=2).start("lag")
    lags: list[float] = []
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            code, st = rig.status()
            assert code == 0 and st["service"] == "healthy", st
            lags.append(float(st["lag_seconds"]))
            time.sleep(1)
        # A backup while Litestream replicates and the writers write: consistent, verified.
        made = rig.montero("backup", "sqlite", "--json", timeout=300)
        assert made.returncode == 0, made.stderr[-2000:]
        assert rig.montero("backups", "verify", json.loads(made.stdout)["id"], timeout=300).returncode == 0
    finally:
        writers.stop()
    rate = len(writers.committed) / 10
    print(f"replication lag under {rate:.0f} writes/s: max {max(lags):.1f} s, median {statistics.median(lags):.1f} s "
          f"over {len(lags)} samples")
    assert not writers.failures, writers.failures[:5]
    assert len(writers.committed) > 20 and max(lags) < 5, (len(writers.committed), lags)
    rig.wait_synced()
    rig.assert_replicated({n for n, _ in writers.committed}, tmp_path)
    # doctor agrees.
    doctor = json.loads(rig.montero("doctor", "--json", timeout=180).stdout)
    found = [f for f in doctor if f["id"].startswith("replication.")]
    assert [(f["id"], f["status"]) for f in found] == [("replication.lag", "pass")], found
    # No credential in what montero prints of the configuration.
    shown = rig.montero("config", timeout=120)
    assert rig.s3.env()["AWS_SECRET_ACCESS_KEY"] not in shown.stdout + shown.stderr


def test_restore_to_a_time_between_two_writes(rig: Rig) -> None:
    first = Writers(rig.base, rig.token, threads=1)
    first.start("before")
    time.sleep(2)
    first.stop()
    rig.wait_synced()
    time.sleep(1.2)  # Litestream stamps its files to the second: T is strictly after the first batch's
    moment = datetime.now(UTC).replace(microsecond=0)
    time.sleep(1.5)
    second = Writers(rig.base, rig.token, threads=1).start("after")
    time.sleep(2)
    second.stop()
    rig.wait_synced()
    assert first.committed and second.committed
    before_t = names_in_api(rig)
    done = rig.montero("restore", "--to-time", moment.strftime("%Y-%m-%dT%H:%M:%SZ"), "--yes")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "safety backup" in done.stderr
    after = names_in(rig.db)
    expected = {n for n in before_t if not n.startswith("after")}
    assert after == expected, (sorted(after - expected)[:5], sorted(expected - after)[:5])
    # Served by the restarted app, and the replicate service is back.
    rig.token = login(rig.base)
    assert api(f"{rig.base}/api/clients?per_page=1", token=rig.token)[0] == 200
    rig.wait_synced()


def names_in_api(rig: Rig) -> set[str]:
    """Every client name the app serves now (its database file, read-only)."""
    return names_in(rig.db)


def test_s3_down_30s_app_serves_status_errors_then_catches_up(rig: Rig, tmp_path: Path) -> None:
    writers = Writers(rig.base, rig.token, rate=20, threads=1).start("outage")
    try:
        time.sleep(2)
        rig.s3.stop()
        stopped = time.monotonic()
        try:
            time.sleep(10)
            code, st = rig.status()
            assert code == 1 and st["last_error"] and "unreachable" in st["last_error"], st
            assert st["lag_seconds"] is not None and st["lag_seconds"] > 5, st
            time.sleep(max(0.0, 30 - (time.monotonic() - stopped)))
        finally:
            rig.s3.start()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            code, st = rig.status()
            if code == 0 and st["lag_seconds"] is not None and st["lag_seconds"] < 5:
                break
            time.sleep(1)
        else:
            raise AssertionError(f"replication did not catch up: {st}")
    finally:
        writers.stop()
    assert not writers.failures, writers.failures[:5]  # the app kept serving every write
    assert len(writers.committed) > 50
    rig.wait_synced()
    rig.assert_replicated({n for n, _ in writers.committed}, tmp_path)
    # The replicate service stopped while its profile is on: doctor fails.
    container = f"{rig.stack.name}-replicate-1"
    subprocess.run(["docker", "stop", "-t", "5", container], check=True, capture_output=True, timeout=60)
    try:
        doctor = json.loads(rig.montero("doctor", "--json", timeout=180).stdout)
        found = {f["id"]: f["status"] for f in doctor if f["id"].startswith("replication.")}
        assert found == {"replication.service": "fail"}, found
        assert rig.status()[0] == 1
    finally:
        subprocess.run(["docker", "start", container], check=True, capture_output=True, timeout=60)
    rig.wait_synced()


def test_lost_host_restores_latest_with_only_env(rig: Rig) -> None:
    writers = Writers(rig.base, rig.token, threads=1).start("last")
    time.sleep(3)
    writers.stop()
    committed = names_in(rig.db)
    assert {n for n, _ in writers.committed} <= committed
    time.sleep(5)  # rows committed more than 5 s before the loss must all come back
    down = rig.montero("down")
    assert down.returncode == 0, down.stderr
    shutil.rmtree(rig.stack.root / "data")
    shutil.rmtree(rig.stack.root / "backups", ignore_errors=True)
    done = rig.montero("restore", "--to-time", "latest", "--yes")
    assert done.returncode == 0, done.stderr[-3000:]
    assert names_in(rig.db) == committed
    up = rig.montero("up", "--profile", "replicate", timeout=600)
    assert up.returncode == 0, up.stderr[-3000:] + rig.stack.logs()
    token = login(rig.base)
    status, listing = api(f"{rig.base}/api/clients?per_page=1", token=token)
    assert status == 200 and listing["total"] == len(committed), listing
    # It replicates again from the restored file.
    rig.token = token
    again = Writers(rig.base, token, threads=1).start("reborn")
    time.sleep(2)
    again.stop()
    rig.wait_synced()


@pytest.mark.skipif(not os.environ.get("MONTERO_BENCH_REPLICATION"), reason="figures: MONTERO_BENCH_REPLICATION=1")
def test_figure_recovery_point_and_write_cost(rig: Rig, tmp_path: Path) -> None:
    """docs/benchmarks.md figure 15: medians of 5 runs after a warm-up, printed as a table row."""
    container = f"{rig.stack.name}-replicate-1"

    def throughput(seconds: float = 8) -> float:
        w = Writers(rig.base, rig.token, threads=4).start("tp")
        time.sleep(seconds)
        w.stop()
        assert not w.failures, w.failures[:3]
        return len(w.committed) / seconds

    def replicate(on: bool) -> None:
        subprocess.run(["docker", "start" if on else "stop", container], check=True, capture_output=True, timeout=60)
        if on:
            rig.wait_synced(120)

    throughput(4)  # warm-up
    on, off = [], []
    for _ in range(5):
        on.append(throughput())
        replicate(False)
        off.append(throughput())
        replicate(True)
    cost = 1 - statistics.median(on) / statistics.median(off)
    # Recovery point: writers at 100/s in all; at a moment of "loss" the replica's newest state is read,
    # and the committed rows it lacks say how many seconds of writes would be gone.
    lost: list[float] = []
    for i in range(6):
        w = Writers(rig.base, rig.token, rate=17, threads=6).start(f"rpo{i}")
        time.sleep(6)
        loss = time.time()
        present = rig.replica_names(tmp_path)
        w.stop()
        missing = [at for name, at in w.committed if at <= loss and name not in present]
        if i:  # the first is the warm-up
            lost.append(loss - min(missing) if missing else 0.0)
        rate = len([1 for _, at in w.committed if at <= loss]) / 6
    print(f"\nFIGURE 15 | writes/s with replication {statistics.median(on):.0f} (runs {[round(x) for x in on]}), "
          f"without {statistics.median(off):.0f} (runs {[round(x) for x in off]}), cost {cost:.1%} | "
          f"recovery point at {rate:.0f} writes/s: median {statistics.median(lost):.2f} s, max {max(lost):.2f} s "
          f"(runs {[round(x, 2) for x in lost]}) | load {os.getloadavg()[0]:.1f}")
