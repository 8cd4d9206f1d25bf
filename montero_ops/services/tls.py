"""TLS certificates for the production nginx: self-signed, Let's Encrypt (certbot webroot), status.

Where things live (all under the project, ignored by git, bind-mounted into nginx, never in an image):
  docker/certs/fullchain.pem, privkey.pem   the active pair nginx serves (/etc/nginx/certs in the container)
  docker/certs/letsencrypt/                 certbot's --config-dir (live/, archive/, renewal/)
  docker/certs/webroot/                     the ACME webroot nginx serves at /.well-known/acme-challenge/
For Let's Encrypt the active pair are relative symlinks into letsencrypt/live/DOMAIN/, so a renewal
is picked up by a reload without copying. nginx enables its HTTPS server only when the pair exists
(docker/nginx/montero-nginx.sh), so the production profile starts before any certificate is issued.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from montero_ops.errors import CommandFailed, UsageError
from montero_ops.project import Project

CERT_NAME = "fullchain.pem"
KEY_NAME = "privkey.pem"


def certs_dir(project: Project) -> Path:
    return Path(os.environ.get("MONTERO_CERTS_DIR") or project.root / "docker" / "certs")


def webroot(project: Project) -> Path:
    return certs_dir(project) / "webroot"


@dataclass
class CertStatus:
    present: bool
    path: str
    subject: str | None = None
    issuer: str | None = None
    domains: list[str] = field(default_factory=list)
    not_before: str | None = None
    not_after: str | None = None
    days_left: int | None = None
    self_signed: bool | None = None
    source: str | None = None  # "self-signed" | "letsencrypt" | "other"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def validate_domain(domain: str) -> str:
    domain = domain.strip().lower()
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789-.*:")
    if not domain or not set(domain) <= allowed or domain.startswith(("-", ".")) or len(domain) > 253:
        raise UsageError(f"not a valid domain name: {domain!r}", hint="e.g. --domain example.com")
    return domain


def self_signed(project: Project, domain: str = "localhost", days: int = 365) -> CertStatus:
    """Write a fresh self-signed pair (EC P-256, SAN = domain, localhost, 127.0.0.1) atomically."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    domain = validate_domain(domain)
    if days < 1 or days > 3650:
        raise UsageError("--days must be between 1 and 3650")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Montero self-signed")])
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dict.fromkeys([domain, "localhost"])]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    install_pair(project, cert.public_bytes(serialization.Encoding.PEM), key_pem)
    return status(project)


def install_pair(project: Project, cert_pem: bytes, key_pem: bytes) -> None:
    """Replace the active pair: each file written to a temp name then renamed (never half a pair)."""
    folder = certs_dir(project)
    folder.mkdir(parents=True, exist_ok=True)
    for name, data, mode in ((KEY_NAME, key_pem, 0o600), (CERT_NAME, cert_pem, 0o644)):
        target = folder / name
        tmp = folder / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if target.is_symlink() or target.exists():
            target.unlink()
        os.replace(tmp, target)


def link_letsencrypt(project: Project, domain: str) -> None:
    """Point the active pair at certbot's live/DOMAIN files (relative links work in the container)."""
    folder = certs_dir(project)
    live = folder / "letsencrypt" / "live" / domain
    if not (live / CERT_NAME).exists():
        raise CommandFailed(f"certbot left no certificate in {live}", hint="certbot's log: docker/certs/letsencrypt/logs/letsencrypt.log")
    for name in (CERT_NAME, KEY_NAME):
        target = folder / name
        tmp = folder / f".{name}.lnk"
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.join("letsencrypt", "live", domain, name), tmp)
        os.replace(tmp, target)


def status(project: Project) -> CertStatus:
    from cryptography import x509

    path = certs_dir(project) / CERT_NAME
    if not path.exists():
        return CertStatus(present=False, path=str(path))
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise CommandFailed(f"{path} is not a PEM certificate: {exc}", hint="run `montero tls self-signed`") from exc
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        domains = [str(v) for v in san.get_values_for_type(x509.DNSName)]
        domains += [str(v) for v in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        domains = []
    not_after = cert.not_valid_after_utc
    days_left = (not_after - dt.datetime.now(dt.UTC)).days
    is_self = cert.issuer == cert.subject
    source = "self-signed" if is_self else ("letsencrypt" if path.is_symlink() else "other")
    return CertStatus(
        present=True, path=str(path), subject=cert.subject.rfc4514_string(), issuer=cert.issuer.rfc4514_string(),
        domains=domains, not_before=cert.not_valid_before_utc.isoformat(), not_after=not_after.isoformat(),
        days_left=days_left, self_signed=is_self, source=source,
    )


def reload_nginx(client: Any) -> bool:
    """Re-read certificates: the entry script re-decides HTTP-only vs HTTPS, tests, then reloads.

    Returns False when nginx is not running (it picks the certificates up when it starts).
    """
    from python_on_whales.exceptions import DockerException

    try:
        client.compose.execute("nginx", ["sh", "/usr/local/bin/montero-nginx", "reload"], tty=False)
    except DockerException as exc:
        text = f"{exc.stderr or ''}{exc.stdout or ''}".lower()
        if "not running" in text or "no such service" in text or "no container" in text:
            return False
        raise CommandFailed("nginx refused the new configuration: " + (exc.stderr or exc.stdout or "").strip()[-300:],
                            hint="check the certificate files with `montero tls status`") from exc
    return True
