"""Let's Encrypt for real (issue 19): Debian's Pebble (Let's Encrypt's own ACME test server), Debian's
certbot and the production nginx, one stack for the module (ordered steps).

Name resolution: Pebble's `-dnsserver` points at `pebble-challtestsrv` (same Debian package), a mock
DNS server on loopback that answers every A query with 127.0.0.1 and serves the TXT records of
DNS-01; the host's resolver is never touched. PEBBLE_VA_ALWAYS_VALID was not used: it skips the
challenge, so the webroot through nginx would be proven by nothing and a renewal could not fail.

Pebble validates HTTP-01 on one port of its config (`httpPort`), which is a small TCP relay to
nginx's published HTTP port: the relay is "the internet path to port 80", and closing it makes the
challenge unreachable (connection refused) while nginx keeps serving HTTPS.

Pebble's knobs: certificates valid 20 days (under the 30 days of `montero tls renew`, so every
renewal is due and runs for real), no random nonce rejection (PEBBLE_WFE_NONCEREJECT=0: certbot
retries a bad nonce once, and 5 % rejections make runs flaky), no authz reuse (PEBBLE_AUTHZREUSE=0,
so every order is validated again), no validation sleeps (PEBBLE_VA_NOSLEEP=1).
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import os
import secrets
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import pytest

DOMAIN = "acme.test"
VALIDITY_S = 20 * 86400
TOOLS = ("pebble", "pebble-challtestsrv", "certbot")


@pytest.fixture(scope="module", autouse=True)
def acme_tools() -> None:
    """Debian's pebble and certbot; under CI=true their absence fails (setup.sh installs them)."""
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        why = f"{', '.join(missing)} not installed: bash scripts/setup.sh installs them (Debian: pebble, certbot)"
        if os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}:
            pytest.fail(why, pytrace=False)
        pytest.skip(why)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ok(done: subprocess.CompletedProcess[str], what: str) -> str:
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


class Relay:
    """127.0.0.1:port -> 127.0.0.1:target, one thread per connection; stop() closes the port."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = _free_port()
        self.server: socket.socket | None = None

    def start(self) -> None:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(16)
        self.server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            # shutdown() first: on Linux a bare close() leaves the socket listening while the
            # accept() thread still holds it (connections then get reset, not refused).
            try:
                self.server.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.server.close()
            self.server = None

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=10)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@dataclass
class Pebble:
    directory: str
    listener_ca: Path  # signs Pebble's own HTTPS (certbot's --ca-bundle)
    root: Path  # Pebble's issuing root, fetched from its management API
    challtestsrv: str
    relay: Relay
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def _listener_pair(folder: Path) -> Path:
    """A throwaway CA and a localhost certificate for Pebble's HTTPS listener (made at run time)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "montero e2e pebble listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (folder / "listener-ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "listener.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(folder / "listener-key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return folder / "listener-ca.pem"


def _wait_https(url: str, ctx: ssl.SSLContext, timeout: float = 30) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, context=ctx, timeout=5) as resp:
                return bytes(resp.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="module")
def stack(module_stack_project: Any) -> Any:
    p = module_stack_project
    p.write_env(SECRET_KEY=secrets.token_hex(32), DEFAULT_RATE_LIMIT="100000 per minute",
                MONTERO_SERVER_NAME=DOMAIN)
    # HTTPS from the start (as a site that moves from self-signed to an ACME certificate), so the
    # load loop measures the switch itself.
    _ok(p.run_montero("tls", "self-signed", "--domain", DOMAIN), "tls self-signed")
    _ok(p.run_montero("up", "--profile", "production", timeout=600), "up --profile production")
    p.compose_files.append(p.root / "docker" / "compose.production.yml")
    p.profiles.append("production")
    return p


@pytest.fixture(scope="module")
def pebble(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pebble]:
    folder = tmp_path_factory.mktemp("pebble")
    listener_ca = _listener_pair(folder)
    acme_port, mgmt_port, dns_port, chall_port = (_free_port() for _ in range(4))
    relay = Relay(stack.http_port)
    relay.start()
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{acme_port}", "managementListenAddress": f"127.0.0.1:{mgmt_port}",
        "certificate": str(folder / "listener.pem"), "privateKey": str(folder / "listener-key.pem"),
        "httpPort": relay.port, "tlsPort": _free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False, "certificateValidityPeriod": VALIDITY_S}}
    (folder / "pebble.json").write_text(json.dumps(config))
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (folder / "challtestsrv.log").open("wb") as log:
            procs.append(subprocess.Popen(
                ["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns_port}", "-http01", "", "-https01", "",
                 "-tlsalpn01", "", "-management", f"127.0.0.1:{chall_port}", "-defaultIPv4", "127.0.0.1",
                 "-defaultIPv6", ""], stdout=log, stderr=subprocess.STDOUT))
        with (folder / "pebble.log").open("wb") as log:
            procs.append(subprocess.Popen(["pebble", "-config", str(folder / "pebble.json"),
                                           "-dnsserver", f"127.0.0.1:{dns_port}"],
                                          stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder))
        ctx = ssl.create_default_context(cafile=str(listener_ca))
        _wait_https(f"https://127.0.0.1:{acme_port}/dir", ctx)
        root = folder / "pebble-root.pem"
        root.write_bytes(_wait_https(f"https://127.0.0.1:{mgmt_port}/roots/0", ctx))
        yield Pebble(f"https://127.0.0.1:{acme_port}/dir", listener_ca, root, f"http://127.0.0.1:{chall_port}",
                     relay, procs)
    finally:
        relay.stop()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _served(p: Any, cafile: Path, name: str = DOMAIN) -> dict[str, Any]:
    """The certificate nginx serves for `name`, verified (chain and host name) against `cafile`."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    with socket.create_connection(("127.0.0.1", p.https_port), timeout=10) as sock, \
            ctx.wrap_socket(sock, server_hostname=name) as tls:
        der = tls.getpeercert(binary_form=True)
    from cryptography import x509

    assert der is not None
    cert = x509.load_der_x509_certificate(der)
    return {"serial": cert.serial_number, "issuer": cert.issuer.rfc4514_string()}


def _file_serial(p: Any) -> int:
    from cryptography import x509

    return int(x509.load_pem_x509_certificate((p.root / "docker" / "certs" / "fullchain.pem").read_bytes())
               .serial_number)


@dataclass
class Load:
    """HTTPS GET /health through nginx, a new connection each time (so each sees the current
    certificate), verified against every CA the test expects; counts requests and failures."""

    p: Any
    cafile: Path
    count: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def _run(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.cafile))
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.p.https_port), timeout=10) as sock, \
                        ctx.wrap_socket(sock, server_hostname=DOMAIN) as tls:
                    tls.sendall(f"GET /health HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n".encode())
                    head = tls.recv(64).decode(errors="replace")
                    if not head.startswith("HTTP/1.1 200"):
                        self.errors.append(head.split("\r\n")[0])
            except OSError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            self.count += 1

    keepalive_count: int = 0
    keepalive_closed: int = 0  # reused connections nginx closed between requests (retried once)
    keepalive: threading.Thread | None = None

    def _run_keepalive(self) -> None:
        """One client reusing its connection, as browsers and HTTP libraries do: a reload must not
        drop a request in flight; an idle reused connection closed by nginx is retried once, as every
        HTTP client does for an idempotent GET, and counted apart."""
        ctx = ssl.create_default_context(cafile=str(self.cafile))

        class Connection(http.client.HTTPConnection):  # HTTPS to 127.0.0.1, verified as DOMAIN
            def connect(self) -> None:
                super().connect()
                self.sock = ctx.wrap_socket(self.sock, server_hostname=DOMAIN)

        conn = Connection("127.0.0.1", self.p.https_port, timeout=10)
        reused = False
        while not self.stop.is_set():
            for attempt in (1, 2):
                try:
                    conn.request("GET", "/health", headers={"Host": DOMAIN})
                    resp = conn.getresponse()
                    resp.read()
                    if resp.status != 200:
                        self.errors.append(f"keep-alive: HTTP {resp.status}")
                    reused = True
                    break
                except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                    conn.close()
                    if reused and attempt == 1:
                        self.keepalive_closed += 1
                        reused = False
                        continue
                    self.errors.append(f"keep-alive: {type(exc).__name__}: {exc}")
                except OSError as exc:
                    conn.close()
                    self.errors.append(f"keep-alive: {type(exc).__name__}: {exc}")
                    break
            self.keepalive_count += 1
        conn.close()

    def __enter__(self) -> Self:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.keepalive = threading.Thread(target=self._run_keepalive, daemon=True)
        self.thread.start()
        self.keepalive.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # a few requests after the last reload too
        self.stop.set()
        assert self.thread is not None and self.keepalive is not None
        self.thread.join(timeout=30)
        self.keepalive.join(timeout=30)


@pytest.fixture(scope="module")
def trust(stack: Any, pebble: Pebble, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The self-signed certificate served before the ACME one, and Pebble's root: either must verify."""
    bundle = tmp_path_factory.mktemp("trust") / "ca.pem"
    bundle.write_bytes((stack.root / "docker" / "certs" / "fullchain.pem").read_bytes() + pebble.root.read_bytes())
    return bundle


def _issue(p: Any, pebble: Pebble, *extra: str, domain: str = DOMAIN) -> subprocess.CompletedProcess[str]:
    return p.run_montero("tls", "issue", "--domain", domain, "--email", "ops@acme.test", "--acme-server",
                         pebble.directory, "--ca-bundle", str(pebble.listener_ca), *extra, timeout=300)


def test_issue_through_the_webroot_and_reload_without_dropping_requests(stack: Any, pebble: Pebble,
                                                                        trust: Path) -> None:
    with Load(stack, trust) as load:
        done = _issue(stack, pebble)
    _ok(done, "tls issue")
    assert load.errors == [] and load.count > 20 and load.keepalive_count > 20, (
        load.count, load.keepalive_count, load.keepalive_closed, load.errors[:5])
    certs = stack.root / "docker" / "certs"
    assert os.readlink(certs / "fullchain.pem") == f"letsencrypt/live/{DOMAIN}/fullchain.pem"
    assert os.readlink(certs / "privkey.pem") == f"letsencrypt/live/{DOMAIN}/privkey.pem"
    st = json.loads(_ok(stack.run_montero("tls", "status", "--json"), "tls status"))
    assert st["issuer"].startswith("CN=Pebble Intermediate CA") and st["domains"] == [DOMAIN]
    assert st["days_left"] in (19, 20) and st["source"] == "letsencrypt"
    human = _ok(stack.run_montero("tls", "status"), "tls status")
    assert "issuer:      CN=Pebble Intermediate CA" in human and "days left" in human
    # nginx serves the Pebble-issued chain, verified with Pebble's root only.
    served = _served(stack, pebble.root)
    assert served["serial"] == _file_serial(stack) and served["issuer"].startswith("CN=Pebble Intermediate CA")


def test_renew_skips_what_is_not_due_then_renews_what_is(stack: Any, pebble: Pebble, trust: Path) -> None:
    before = _file_serial(stack)
    quiet = stack.run_montero("tls", "renew", "--days", "10")
    assert quiet.returncode == 0, quiet.stderr
    assert f"{DOMAIN}: not due" in quiet.stderr and "nothing is due" in quiet.stderr
    assert _file_serial(stack) == before
    with Load(stack, trust) as load:
        done = stack.run_montero("tls", "renew", timeout=300)  # 20-day certificates: due under 30 days
    _ok(done, "tls renew")
    assert f"{DOMAIN}: renewed" in done.stderr and "nginx reloaded" in done.stderr
    assert load.errors == [] and load.count > 20 and load.keepalive_count > 20, (
        load.count, load.keepalive_count, load.keepalive_closed, load.errors[:5])
    after = _file_serial(stack)
    assert after != before
    assert _served(stack, pebble.root)["serial"] == after


def _failing_renewal(run: Any) -> subprocess.CompletedProcess[str]:
    """Pebble 2.4.0 still reuses a valid authorization 1 % of the time with PEBBLE_AUTHZREUSE=0
    (`rand.Intn(100) > percent` in wfe/wfe.go), and then there is no challenge to fail: retry."""
    for _ in range(3):
        done: subprocess.CompletedProcess[str] = run()
        if done.returncode != 0:
            return done
    return done


def test_failed_renewal_exits_1_with_the_reason_and_keeps_serving(stack: Any, pebble: Pebble) -> None:
    # Nothing is scheduled yet: doctor says so for an ACME certificate, with the fix.
    finding = _renewal_finding(stack)
    assert finding["status"] == "fail" and finding["message"] == "no certificate renewal is scheduled", finding
    assert "montero schedule install --job renew=" in finding["fix"]
    serving = _file_serial(stack)
    pebble.relay.stop()  # port 80 unreachable from the CA
    try:
        done = _failing_renewal(lambda: stack.run_montero("tls", "renew", timeout=300))
    finally:
        pebble.relay.start()
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"Error: certbot could not renew {DOMAIN}: connection: ")
    assert errors[0].endswith("connect: connection refused")
    assert "is still served" in done.stderr
    assert _file_serial(stack) == serving
    assert _served(stack, pebble.root)["serial"] == serving


@pytest.fixture
def renew_scheduled(stack: Any) -> Iterator[str]:
    if shutil.which("crontab") is None:
        pytest.skip("cron is not installed (scripts/setup.sh)")
    # No --job: once `tls issue` has made a certificate, renewal is one of install's default jobs (02:45).
    _ok(stack.run_montero("schedule", "install", "--cron"), "schedule install")
    crontab = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=True).stdout
    ours = [ln for ln in crontab.splitlines() if "schedule run renew" in ln and str(stack.root) in ln]
    assert len(ours) == 1 and ours[0].startswith("45 2 * * * ")
    try:
        yield ours[0].split(" ", 5)[5]  # the command cron runs
    finally:
        stack.run_montero("schedule", "remove")  # the crontab gets back exactly what it had


def _renewal_finding(stack: Any) -> dict[str, Any]:
    done = stack.run_montero("doctor", "--production", "--json", timeout=180)
    findings = {f["id"]: f for f in json.loads(done.stdout)}
    return dict(findings["prod.renewal"])


def test_unattended_renewal_failure_reaches_doctor(stack: Any, pebble: Pebble, renew_scheduled: str) -> None:
    # The cron entry's command as cron runs it: sh -c, an almost empty environment (so the CA
    # bundle comes from what `tls issue` recorded, not from this test's environment).
    def cron_run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", renew_scheduled], env={"HOME": str(stack.root), "SHELL": "/bin/sh"},
                              capture_output=True, text=True, timeout=300, check=False)

    pebble.relay.stop()
    try:
        _failing_renewal(cron_run)
    finally:
        pebble.relay.start()
    record = json.loads((stack.root / "logs" / "schedule" / "renew.json").read_text())
    assert record["exit_code"] == 1, record
    assert record["summary"].startswith(f"Error: certbot could not renew {DOMAIN}: connection: ")
    assert "connection refused" in record["summary"]
    finding = _renewal_finding(stack)
    assert finding["status"] == "fail", finding
    assert "the last scheduled renewal failed (exit 1)" in finding["message"] and "connection refused" in finding["message"]
    assert "montero schedule run renew" in finding["fix"]
    # Port 80 reachable again: the next unattended run renews, and doctor is satisfied.
    done = cron_run()
    assert done.returncode == 0, done.stderr
    record = json.loads((stack.root / "logs" / "schedule" / "renew.json").read_text())
    assert record["exit_code"] == 0, record
    assert _renewal_finding(stack)["status"] == "pass"


HOOK = """#!/bin/sh
# DNS-01 hook for the test: publish/remove _acme-challenge TXT in pebble-challtestsrv's mock DNS.
set -eu
host="_acme-challenge.${CERTBOT_DOMAIN}."
case "$1" in
    add) path=set-txt; body="{\\"host\\": \\"$host\\", \\"value\\": \\"$CERTBOT_VALIDATION\\"}" ;;
    remove) path=clear-txt; body="{\\"host\\": \\"$host\\"}" ;;
esac
exec "$HOOK_PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST"), timeout=10)' "$CHALLTESTSRV/$path" "$body"
"""


def test_wildcard_through_a_dns01_hook(stack: Any, pebble: Pebble, tmp_path: Path) -> None:
    hook = tmp_path / "dns-hook"
    hook.write_text(HOOK)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    done = stack.run_montero("tls", "issue", "--domain", f"*.{DOMAIN}", "--email", "ops@acme.test",
                             "--acme-server", pebble.directory, "--ca-bundle", str(pebble.listener_ca),
                             "--dns-hook", str(hook), timeout=300,
                             env={"CHALLTESTSRV": pebble.challtestsrv, "HOOK_PYTHON": sys.executable})
    _ok(done, "tls issue --dns-hook")
    st = json.loads(_ok(stack.run_montero("tls", "status", "--json"), "tls status"))
    assert st["domains"] == [f"*.{DOMAIN}"] and st["issuer"].startswith("CN=Pebble Intermediate CA")
    assert _served(stack, pebble.root, name=f"www.{DOMAIN}")["serial"] == _file_serial(stack)
