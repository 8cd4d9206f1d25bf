"""Issue 21 on the real engine, one fresh production stack for the module (points 1 and 3):

- the stack as a user makes it: `montero env init` (generated SECRET_KEY and REDIS_PASSWORD),
  `montero tls self-signed`, `montero up --profile production`;
- every service read back with `docker inspect`: limits and a pids limit, read-only root,
  `cap_drop: ALL`, no-new-privileges; Redis non-root, with a password, published nowhere;
- the password is used by the app (rate limits in Redis), by `montero backup redis`, and it is in
  no command output; a client without it is refused;
- `montero doctor --production` exits 0 on that fresh stack;
- log rotation: N known lines from 4 real gunicorn workers across >= 2 rotations, all found, 0640.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

LOG_LINES = 1500
LOG_MAX_BYTES = 20000


def _ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _env(p: Any) -> dict[str, str]:
    values = {}
    for line in (p.root / ".env").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip()
    return values


@pytest.fixture(scope="module")
def hardened(module_stack_project: Any) -> Any:
    p = module_stack_project
    (p.root / ".env").unlink(missing_ok=True)
    _ok(p.run_montero("env", "init"), "env init")
    # 4 workers and small files: the rotation test needs both; rate limits lifted for its burst.
    p.write_env(GUNICORN_WORKERS="4", LOG_MAX_BYTES=str(LOG_MAX_BYTES), LOG_BACKUPS="200",
                DEFAULT_RATE_LIMIT="100000 per minute")
    _ok(p.run_montero("tls", "self-signed", "--domain", "localhost"), "tls self-signed")
    _ok(p.run_montero("up", "--profile", "production", timeout=600), "up --profile production")
    p.compose_files.append(p.root / "docker" / "compose.production.yml")
    p.profiles.append("production")
    return p


def _inspect(p: Any) -> dict[str, dict[str, Any]]:
    ids = _ok(p.compose("ps", "-q"), "compose ps").split()
    docs = json.loads(_ok(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=False),
                          "inspect"))
    return {c["Config"]["Labels"]["com.docker.compose.service"]: c for c in docs}


def _https_get(p: Any, path: str) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(p.root / "docker" / "certs" / "fullchain.pem"))
    request = urllib.request.Request(f"https://localhost:{p.https_port}{path}", headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(request, timeout=20, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_every_service_is_hardened(hardened: Any) -> None:
    containers = _inspect(hardened)
    assert set(containers) == {"app", "redis", "nginx"}
    for service, c in containers.items():
        host = c["HostConfig"]
        assert host["ReadonlyRootfs"] is True, service
        assert "/tmp" in (host.get("Tmpfs") or {}), service
        assert host["CapDrop"] == ["ALL"], service
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), service
        assert host["Memory"] > 0 and host["NanoCpus"] > 0 and 0 < (host.get("PidsLimit") or 0) <= 1024, service
        assert c["State"]["Health"]["Status"] == "healthy", service
    redis = containers["redis"]
    assert redis["Config"]["User"] == "redis"
    assert not redis["HostConfig"].get("CapAdd")
    assert not any(redis["HostConfig"].get("PortBindings") or {}), "Redis must not be published"
    uid = _ok(subprocess.run(["docker", "exec", redis["Id"], "id", "-u"], capture_output=True, text=True,
                             check=False), "id -u").strip()
    assert uid not in ("", "0")
    touch = subprocess.run(["docker", "exec", redis["Id"], "touch", "/probe"], capture_output=True, text=True,
                           check=False)
    assert touch.returncode != 0 and "Read-only" in touch.stderr, touch.stderr
    # The password is in the environment only, never in the command line Docker records.
    password = _env(hardened)["REDIS_PASSWORD"]
    assert len(password) == 48
    assert password not in json.dumps(redis["Config"]["Cmd"]) + json.dumps(redis["Args"])


def test_redis_requires_the_password_and_the_app_has_it(hardened: Any) -> None:
    refused = hardened.compose("exec", "-T", "redis", "redis-cli", "ping")
    assert "NOAUTH" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    status, body = _https_get(hardened, "/health")
    assert status == 200, body
    assert json.loads(body)["redis"]["status"] == "ok"  # rate limits live in the password-protected Redis


def test_backup_of_redis_uses_the_password_and_never_prints_it(hardened: Any) -> None:
    done = hardened.run_montero("backup", "redis")
    out = _ok(done, "backup redis") + done.stderr
    password = _env(hardened)["REDIS_PASSWORD"]
    assert password not in out
    shown = _ok(hardened.run_montero("env", "show"), "env show")
    assert password not in shown and "REDIS_PASSWORD" in shown


def test_doctor_production_passes_on_the_fresh_stack(hardened: Any) -> None:
    done = hardened.run_montero("doctor", "--production", "--json")
    report = json.loads(done.stdout)
    failures = [c for c in report if c["status"] == "fail"]
    assert done.returncode == 0 and not failures, failures
    assert _env(hardened)["REDIS_PASSWORD"] not in done.stdout + done.stderr


def test_log_rotation_keeps_every_line_of_four_workers(hardened: Any) -> None:
    with ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(lambda i: _https_get(hardened, f"/nope/e2e-{i}")[0], range(LOG_LINES)))
    assert statuses == [404] * LOG_LINES
    logs = hardened.root / "logs"
    found: dict[int, set[str]] = {}
    pattern = re.compile(r"\[(\d+)\] montero_api\.request: GET /nope/e2e-(\d+) 404")
    files = sorted(f for f in logs.iterdir() if f.name.startswith("montero-api.log"))
    for path in files:
        assert path.stat().st_mode & 0o777 == 0o640, (path.name, oct(path.stat().st_mode))
        for match in pattern.finditer(path.read_text()):
            found.setdefault(int(match.group(2)), set()).add(match.group(1))
    assert len(files) >= 3, f"expected at least two rotations: {[f.name for f in files]}"
    missing = sorted(set(range(LOG_LINES)) - set(found))
    assert not missing, f"{len(missing)} of {LOG_LINES} lines lost, e.g. {missing[:5]}"
    writers = set().union(*found.values())
    assert len(writers) == 4, f"lines came from {len(writers)} gunicorn workers, expected 4"
