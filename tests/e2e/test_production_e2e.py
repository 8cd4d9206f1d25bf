"""Production on one host, on a real engine (issue 7's proof), one stack for the whole module:

nginx the only published entry, HTTPS with a self-signed certificate (`montero tls self-signed`),
HTTP redirecting, the headers; 3 replicas behind nginx, 500 requests, every replica serving some,
zero errors; the same while `montero scale` goes 1 -> 3 -> 1 and during `montero restart --rolling`;
and the hardening read back from the running containers (`docker inspect`).

The tests are ordered steps on one stack (module fixture) to keep CI time down.
"""

from __future__ import annotations

import collections
import http.client
import json
import os
import secrets
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ADMIN = {"email": "admin@example.com", "password": "Prod-Admin-pass-123"}
LOAD_REQUESTS = 500
LOAD_BOUND_S = 600  # a bound, never an assertion on timing


def _ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def prod(module_stack_project: Any) -> Any:
    p = module_stack_project
    # The load loop sends everything from one address and logs one account in repeatedly: lift
    # the limits (rate limiting is the backend's concern, dropped requests are this test's).
    p.write_env(SECRET_KEY=secrets.token_hex(32), DEFAULT_RATE_LIMIT="100000 per minute",
                LOGIN_LIMIT_ACCOUNT="1000 per minute", LOGIN_LIMIT_ADDRESS="1000 per minute")
    _ok(p.run_montero("tls", "self-signed", "--domain", "localhost"), "tls self-signed")
    _ok(p.run_montero("up", "--profile", "production", "--scale", "app=3", timeout=600), "up --profile production")
    p.compose_files.append(p.root / "docker" / "compose.production.yml")
    p.profiles.append("production")
    _ok(p.compose("exec", "-T", "app", "flask", "--app", "wsgi", "create-admin", "--email", ADMIN["email"],
                  "--password", ADMIN["password"], "--name", "Admin"), "create-admin")
    return p


def _tls_context(p: Any) -> ssl.SSLContext:
    # Verify against the self-signed certificate itself: proves nginx serves that very pair.
    return ssl.create_default_context(cafile=str(p.root / "docker" / "certs" / "fullchain.pem"))


def request(p: Any, method: str, path: str, body: Any = None, token: str | None = None,
            https: bool = True, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    conn: http.client.HTTPConnection
    if https:
        conn = http.client.HTTPSConnection("localhost", p.https_port, timeout=timeout, context=_tls_context(p))
    else:
        conn = http.client.HTTPConnection("127.0.0.1", p.http_port, timeout=timeout)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def login(p: Any) -> str:
    status, _, body = request(p, "POST", "/api/auth/login", ADMIN)
    assert status == 200, body
    return str(json.loads(body)["token"])


@dataclass
class Load:
    """Sequential traffic through nginx over HTTPS: authenticated reads, a write and a login now and then."""

    p: Any
    token: str
    served: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[tuple[int, Any, str]] = field(default_factory=list)
    count: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def one(self, i: int) -> None:
        if i % 100 == 50:  # a fresh login: any replica accepts it, any other honours its token
            status, headers, body = request(self.p, "POST", "/api/auth/login", ADMIN)
            expect = 200
            if status == 200:
                self.token = json.loads(body)["token"]
        elif i % 20 == 10:  # a write (POST is never retried by nginx once sent)
            status, headers, body = request(self.p, "POST", "/api/clients",
                                            {"name": f"Load {i}", "nit": f"{time.time_ns()}"}, self.token)
            expect = 201
        else:
            status, headers, body = request(self.p, "GET", "/api/auth/me", token=self.token)
            expect = 200
        # X-Served-By lists every upstream tried; the last one answered.
        self.served[headers.get("x-served-by", "?").split(",")[-1].strip()] += 1
        if status != expect:
            self.errors.append((i, status, body[:200].decode(errors="replace")))

    def run(self, minimum: int = LOAD_REQUESTS) -> None:
        deadline = time.monotonic() + LOAD_BOUND_S
        while (self.count < minimum or not self.stop.is_set()) and time.monotonic() < deadline:
            try:
                self.one(self.count)
            except OSError as exc:
                self.errors.append((self.count, "connection", str(exc)))
            self.count += 1

    def during(self, action: Any) -> None:
        """Run `action` while the load runs; the load goes on until both are done."""
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            action()
        finally:
            self.stop.set()
            thread.join(LOAD_BOUND_S + 60)


def app_addresses(p: Any) -> dict[str, str]:
    """'ip:5000' -> container name, for the app replicas running now."""
    ids = _ok(p.compose("ps", "-q", "app"), "compose ps").split()
    out = _ok(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True, check=False), "inspect")
    found = {}
    for c in json.loads(out):
        for net in c["NetworkSettings"]["Networks"].values():
            found[f"{net['IPAddress']}:5000"] = c["Name"].lstrip("/")
    return found


def test_nginx_is_the_only_published_entry(prod: Any) -> None:
    ids = _ok(prod.compose("ps", "-q"), "compose ps").split()
    inspected = json.loads(_ok(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                              check=False), "inspect"))
    published = {c["Config"]["Labels"]["com.docker.compose.service"]: sorted(
        k for k, v in (c["NetworkSettings"]["Ports"] or {}).items() if v) for c in inspected}
    assert published.get("nginx") == ["443/tcp", "80/tcp"], published
    assert all(not ports for svc, ports in published.items() if svc != "nginx"), published
    assert sum(1 for c in inspected if c["Config"]["Labels"]["com.docker.compose.service"] == "app") == 3


def test_logs_and_exec_reach_nginx_without_naming_the_profile(prod: Any) -> None:
    """nginx is defined only by the production file: montero finds it from what runs."""
    _ok(prod.run_montero("health"), "health")  # warm: nginx has answered probes by now
    logs = _ok(prod.run_montero("logs", "nginx", "--tail", "5"), "logs nginx")
    assert logs.strip() and all(line.startswith("nginx-") for line in logs.strip().splitlines()), logs
    version = prod.run_montero("exec", "nginx", "--", "nginx", "-v")
    assert version.returncode == 0, version.stderr
    assert "nginx version" in version.stdout + version.stderr
    unknown = prod.run_montero("logs", "nosuch")
    assert unknown.returncode == 2 and "no service named nosuch" in unknown.stderr, unknown.stderr


def test_https_answers_http_redirects_headers_present(prod: Any) -> None:
    status, headers, body = request(prod, "GET", "/health")
    assert status == 200, body
    assert headers["strict-transport-security"].startswith("max-age=31536000")
    assert headers["x-served-by"].endswith(":5000")
    assert headers["x-content-type-options"] == "nosniff"

    status, headers, _ = request(prod, "GET", "/api/auth/me?x=1", https=False)
    assert status == 301
    assert headers["location"] == f"https://localhost:{prod.https_port}/api/auth/me?x=1"
    # A forged Host header is not copied into the redirect (MONTERO_SERVER_NAME, default localhost).
    conn = http.client.HTTPConnection("127.0.0.1", prod.http_port, timeout=30)
    try:
        conn.request("GET", "/x", headers={"Host": "evil.example"})
        forged = conn.getresponse()
        assert (forged.status, forged.getheader("Location")) == (301, f"https://localhost:{prod.https_port}/x")
    finally:
        conn.close()

    # The ACME challenge stays on plain HTTP (certbot's webroot is served from docker/certs/webroot).
    challenge = prod.root / "docker" / "certs" / "webroot" / ".well-known" / "acme-challenge"
    challenge.mkdir(parents=True, exist_ok=True)
    (challenge / "probe-token").write_text("montero-acme-ok")
    status, _, body = request(prod, "GET", "/.well-known/acme-challenge/probe-token", https=False)
    assert (status, body) == (200, b"montero-acme-ok")

    # Only TLS 1.2 and 1.3: a TLS 1.1 client is refused.
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this Python's OpenSSL cannot even offer TLS 1.1")
    conn = http.client.HTTPSConnection("localhost", prod.https_port, timeout=10, context=old)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        conn.request("GET", "/health")
    conn.close()

    status_json = json.loads(_ok(prod.run_montero("tls", "status", "--json"), "tls status"))
    assert status_json["present"] and status_json["self_signed"] and status_json["days_left"] >= 364


def test_500_requests_reach_every_replica_without_error(prod: Any) -> None:
    load = Load(prod, login(prod))
    load.stop.set()
    load.run(LOAD_REQUESTS)
    replicas = app_addresses(prod)
    assert load.errors == [], load.errors[:10]
    assert load.count == LOAD_REQUESTS
    assert len(replicas) == 3
    for address, name in replicas.items():
        assert load.served[address] > 0, (name, dict(load.served))


def test_scaling_1_3_1_drops_no_request(prod: Any) -> None:
    load = Load(prod, login(prod))

    def scale() -> None:
        for n in (1, 3, 1):
            _ok(prod.run_montero("scale", f"app={n}", timeout=600), f"scale app={n}")
            assert len(app_addresses(prod)) == n

    load.during(scale)
    assert load.count >= LOAD_REQUESTS
    assert load.errors == [], load.errors[:10]
    assert len([a for a in load.served if a.endswith(":5000")]) >= 3, dict(load.served)


def test_rolling_restart_drops_no_request_and_keeps_logins(prod: Any) -> None:
    _ok(prod.run_montero("scale", "app=2", timeout=600), "scale app=2")
    before = set(app_addresses(prod).values())
    load = Load(prod, login(prod))
    token_before = load.token
    load.during(lambda: _ok(prod.run_montero("restart", "--rolling", timeout=900), "restart --rolling"))
    after = set(app_addresses(prod).values())
    assert load.count >= LOAD_REQUESTS
    assert load.errors == [], load.errors[:10]
    assert len(after) == 2 and not (before & after), (before, after)  # every replica was replaced
    # A token issued before the restart works on replicas that did not exist then.
    status, _, body = request(prod, "GET", "/api/auth/me", token=token_before)
    assert status == 200, body


def _docker(*args: str, input: str | None = None) -> str:
    return _ok(subprocess.run(["docker", *args], capture_output=True, text=True, check=False, input=input,
                              timeout=600), "docker " + args[0])


def test_a_failed_rolling_step_is_undone_under_load(prod: Any) -> None:
    """Issue 21.2: a release that fails at import. The failed step removes the replica it started,
    nginx never sends it a request (0 failed responses in the whole load), the old replicas and
    the replica count stay, and the app image tag points back at the image they run."""
    image = prod.env["MONTERO_APP_IMAGE"]
    good = _docker("image", "inspect", "--format", "{{.Id}}", image).strip()
    before = set(app_addresses(prod).values())
    assert len(before) == 2, before
    dockerfile = (f"FROM {good}\nUSER root\n"
                  "RUN echo 'raise RuntimeError(\"broken release (montero e2e)\")' >> /app/wsgi.py\nUSER appuser\n")
    _docker("build", "-q", "-t", image, "-", input=dockerfile)
    broken = _docker("image", "inspect", "--format", "{{.Id}}", image).strip()
    assert broken != good
    load = Load(prod, login(prod))
    outcome: list[subprocess.CompletedProcess[str]] = []
    try:
        load.during(lambda: outcome.append(prod.run_montero("restart", "--rolling", "--timeout", "120",
                                                            timeout=900)))
        failed = outcome[0]
        assert failed.returncode == 1, (failed.stdout, failed.stderr)
        assert "not healthy" in failed.stderr and "undone" in failed.stderr, failed.stderr
        assert load.count >= LOAD_REQUESTS
        assert load.errors == [], load.errors[:10]
        # No leftover container (running or not), the same two replicas, the image back.
        left = _ok(prod.compose("ps", "-a", "-q", "app"), "compose ps").split()
        assert len(left) == 2, left
        assert set(app_addresses(prod).values()) == before
        assert _docker("image", "inspect", "--format", "{{.Id}}", image).strip() == good
        # And nginx serves from the old replicas only, with DNS again (not pinned).
        load_after = Load(prod, load.token)
        load_after.stop.set()
        load_after.run(100)
        assert load_after.errors == [], load_after.errors[:10]
        assert set(load_after.served) <= set(app_addresses(prod)), load_after.served
    finally:
        subprocess.run(["docker", "tag", good, image], capture_output=True, check=False)
        subprocess.run(["docker", "rmi", broken], capture_output=True, check=False)


# ------------------------------------------------------------------ hardening, read back from the engine

def _inspect_all(p: Any) -> list[dict[str, Any]]:
    ids = _ok(p.compose("ps", "-q"), "compose ps").split()
    return json.loads(_ok(subprocess.run(["docker", "inspect", *ids], capture_output=True, text=True,
                                         check=False), "inspect"))


def test_hardening_of_the_running_containers(prod: Any) -> None:
    containers = _inspect_all(prod)
    services = {c["Config"]["Labels"]["com.docker.compose.service"] for c in containers}
    assert services == {"app", "redis", "nginx"}
    for c in containers:
        name, host = c["Name"], c["HostConfig"]
        # Every service: rotated logs, a healthcheck, no privilege escalation.
        assert host["LogConfig"]["Type"] == "json-file", name
        assert host["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}, name
        assert c["Config"].get("Healthcheck", {}).get("Test"), f"{name} has no healthcheck"
        assert c["State"]["Health"]["Status"] == "healthy", name
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), name
        # Issue 21.3: CPU, memory and pids limits on every service.
        assert host["Memory"] > 0 and host["NanoCpus"] > 0, name
        assert 0 < (host.get("PidsLimit") or 0) <= 1024, (name, host.get("PidsLimit"))
        if c["Config"]["Labels"]["com.docker.compose.service"] != "app":
            continue
        user = c["Config"]["User"] or "root"
        assert user not in ("root", "0", "0:0"), f"{name} runs as {user}"
        assert host["ReadonlyRootfs"] is True, name
        assert "/tmp" in (host.get("Tmpfs") or {}), name
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), name
        assert host["NanoCpus"] == 2 * 10**9, name  # 2 CPUs
        assert host["Memory"] == 1024**3, name  # 1 GB
        assert host["MemoryReservation"] == 512 * 1024**2, name
        assert host.get("Privileged") is False, name
        # Really non-root and really read-only inside.
        uid = subprocess.run(["docker", "exec", c["Id"], "id", "-u"], capture_output=True, text=True, check=False)
        assert uid.stdout.strip() not in ("", "0"), uid.stderr
        touch = subprocess.run(["docker", "exec", c["Id"], "touch", "/app/probe"], capture_output=True, text=True,
                               check=False)
        assert touch.returncode != 0 and "Read-only" in touch.stderr, touch.stderr


def test_gunicorn_workers_follow_the_container_cpus(prod: Any) -> None:
    cid = _ok(prod.compose("ps", "-q", "app"), "compose ps").split()[0]
    script = ("import os\nn = 0\nfor pid in filter(str.isdigit, os.listdir('/proc')):\n"
              "    if int(pid) == os.getpid(): continue\n"
              "    try: cmd = open(f'/proc/{pid}/cmdline', 'rb').read()\n    except OSError: continue\n"
              "    n += b'gunicorn' in cmd\nprint(n)")
    done = subprocess.run(["docker", "exec", cid, "python", "-c", script], capture_output=True, text=True, check=False)
    processes = int(_ok(done, "count gunicorn processes").strip())
    cpus = min(len(os.sched_getaffinity(0)), 2)  # the host's cores, capped by the 2-CPU limit
    assert processes == 1 + (2 * cpus + 1), processes  # master + (2 x CPUs) + 1 workers


def test_no_env_content_in_any_image_layer(prod: Any) -> None:
    image = prod.env["MONTERO_APP_IMAGE"]
    secret = next(line.split("=", 1)[1] for line in (prod.root / ".env").read_text().splitlines()
                  if line.startswith("SECRET_KEY="))
    values = [secret]
    repo_env = Path(__file__).resolve().parents[2] / ".env"  # the image was built from the checkout
    if repo_env.is_file():
        values += [ln.split("=", 1)[1] for ln in repo_env.read_text().splitlines()
                   if ln.startswith("SECRET_KEY=") and len(ln) > 20]
    history = _ok(subprocess.run(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
                                 capture_output=True, text=True, check=False), "docker history")
    config = _ok(subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True,
                                check=False), "docker image inspect")
    for value in values:
        assert value not in history and value not in config
    # The image's files: no .env anywhere and no secret value in any file (grep reads the value from stdin).
    scan = subprocess.run(
        ["docker", "run", "--rm", "-i", "--entrypoint", "sh", image, "-c",
         ("find / -xdev -name .env -print; while read -r v; do grep -rlsF -- \"$v\" /app /opt /etc /home /root "
          "2>/dev/null; done; true")],
        input="\n".join(values) + "\n", capture_output=True, text=True, timeout=300, check=False,
    )
    assert scan.returncode == 0, scan.stderr
    assert scan.stdout.strip() == "", scan.stdout
