"""What `montero tls renew` costs next to certbot alone, on a real ACME server (Pebble).

    python bench/acme_bench.py [--runs 5]

Starts Debian's pebble and pebble-challtestsrv (mock DNS: every name is 127.0.0.1) and a plain
HTTP server for the webroot on loopback, issues one certificate with `montero tls issue` into a
temp project, then times, alternating after one warm-up each:
  not due   `montero tls renew --days 10`   vs  `certbot renew` (renew_before_expiry = 10 days)
  due       `montero tls renew` (renews)    vs  `certbot renew --force-renewal`
Pebble issues 20-day certificates, so with the default 30 days every montero renewal is due.
No nginx runs: montero's reload step finds none (that docker call is part of its time).
Prints a markdown table; the figures in docs/benchmarks.md come from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOMAIN = "bench.acme.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listener_pair(folder: Path) -> Path:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "montero bench pebble listener CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True).sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False).sign(ca_key, hashes.SHA256()))
    (folder / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(folder / "key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return folder / "ca.pem"


def timed(cmd: list[str], env: dict[str, str], expect: int = 0) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False, timeout=300)
    took = time.perf_counter() - t0
    if done.returncode != expect:
        sys.exit(f"{' '.join(cmd[:6])}… exited {done.returncode}:\n{done.stdout[-800:]}\n{done.stderr[-1500:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    for tool in ("pebble", "pebble-challtestsrv", "certbot"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: bash scripts/setup.sh installs it")
    work = Path(tempfile.mkdtemp(prefix="montero-bench-acme-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        ca = listener_pair(work)
        project = work / "shop"
        (project / "docker").mkdir(parents=True)
        shutil.copy2(REPO / "docker" / "compose.yml", project / "docker" / "compose.yml")
        webroot = project / "docker" / "certs" / "webroot"
        webroot.mkdir(parents=True)
        acme, mgmt, dns, chall, http = (free_port() for _ in range(5))
        (work / "pebble.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"127.0.0.1:{acme}", "managementListenAddress": f"127.0.0.1:{mgmt}",
            "certificate": str(work / "cert.pem"), "privateKey": str(work / "key.pem"), "httpPort": http,
            "tlsPort": free_port(), "certificateValidityPeriod": 20 * 86400}}))
        log = (work / "servers.log").open("wb")
        procs.append(subprocess.Popen(["pebble-challtestsrv", "-dns01", f"127.0.0.1:{dns}", "-http01", "",
                                       "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{chall}",
                                       "-defaultIPv6", ""], stdout=log, stderr=log))
        procs.append(subprocess.Popen(["pebble", "-config", str(work / "pebble.json"), "-dnsserver",
                                       f"127.0.0.1:{dns}"], stdout=log, stderr=log,
                                      env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}))
        procs.append(subprocess.Popen([sys.executable, "-m", "http.server", str(http), "--bind", "127.0.0.1",
                                       "--directory", str(webroot)], stdout=log, stderr=log))
        ctx = ssl.create_default_context(cafile=str(ca))
        for _ in range(100):
            try:
                urllib.request.urlopen(f"https://127.0.0.1:{acme}/dir", context=ctx, timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = {**os.environ, "NO_COLOR": "1", "COMPOSE_PROJECT_NAME": "montero-bench-acme"}
        montero = [sys.executable, "-m", "montero_ops", "--project-dir", str(project)]
        timed([*montero, "tls", "issue", "--domain", DOMAIN, "--email", "ops@acme.test", "--acme-server",
               f"https://127.0.0.1:{acme}/dir", "--ca-bundle", str(ca)], env)
        le = project / "docker" / "certs" / "letsencrypt"
        conf = le / "renewal" / f"{DOMAIN}.conf"
        conf.write_text("renew_before_expiry = 10 days\n" + conf.read_text())
        certbot = ["certbot", "renew", "--non-interactive", "--no-random-sleep-on-renew", "--cert-name", DOMAIN,
                   "--webroot", "-w", str(webroot), "--config-dir", str(le), "--work-dir", str(le / "work"),
                   "--logs-dir", str(le / "logs")]
        certbot_env = {**env, "REQUESTS_CA_BUNDLE": str(ca)}
        pairs = {
            "not due": ([*montero, "tls", "renew", "--days", "10"], certbot),
            "due (renews)": ([*montero, "tls", "renew"], [*certbot, "--force-renewal"]),
        }
        rows = []
        for label, (ours, theirs) in pairs.items():
            timed(ours, env)
            timed(theirs, certbot_env)
            a, b = [], []
            for _ in range(runs):
                a.append(timed(ours, env))
                b.append(timed(theirs, certbot_env))
            rows.append((label, statistics.median(a), statistics.median(b)))
        load = os.getloadavg()[0]
        print(f"runs: {runs} per command after a warm-up, alternating; load average {load:.1f} "
              f"on {os.cpu_count()} cores; {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n")
        print("| case | `montero tls renew` | certbot alone | ratio |\n|---|---|---|---|")
        for label, ours_s, theirs_s in rows:
            print(f"| {label} | {ours_s:.2f} s | {theirs_s:.2f} s | {ours_s / theirs_s:.2f} |")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
