"""Certificates from an ACME CA (Let's Encrypt, or any ACME server such as Pebble) through certbot.

certbot does the protocol; montero decides what to ask for and explains the answer:
  issue   `certbot certonly` with the webroot challenge nginx serves (or a DNS hook, for wildcards)
  renew   montero reads every lineage's expiry and renews only those due within N days
          (`certbot renew --cert-name X --force-renewal`, one lineage at a time), so "nothing is due"
          needs no network and a failure names the lineage and certbot's reason in one line.

certbot trusts only the CA bundle of python-requests; an ACME server with a private CA (Pebble,
step-ca, a company CA) needs REQUESTS_CA_BUNDLE, which certbot does not keep for renewals
(certbot issue 7170). montero records the bundle per lineage in letsencrypt/montero.json and sets
it again on every renewal, the unattended ones included.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from montero_ops.errors import CommandFailed, UsageError
from montero_ops.project import Project
from montero_ops.services.tls import certs_dir, validate_domain, webroot

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
CERTBOT_IMAGE_ENV = "MONTERO_CERTBOT_IMAGE"
CERTBOT_DEFAULT_IMAGE = "certbot/certbot:latest"
CONTAINER_CA_BUNDLE = "/etc/montero-acme-ca.pem"
RENEW_DAYS = 30  # Let's Encrypt's advice for 90-day certificates, and certbot's default
CERTBOT_TIMEOUT = 900
RENEW_CRON = "17 3 * * *"


def config_dir(project: Project) -> Path:
    return certs_dir(project) / "letsencrypt"


def log_file(project: Project) -> Path:
    return config_dir(project) / "logs" / "letsencrypt.log"


# -- arguments -------------------------------------------------------------------------------------
def validate_email(email: str) -> str:
    email = email.strip()
    if "@" not in email or email.startswith("@") or email.endswith("@") or " " in email:
        raise UsageError(f"not an e-mail address: {email!r}", hint="the CA sends expiry notices there")
    return email


def validate_server(url: str) -> str:
    url = url.strip()
    if not re.fullmatch(r"https://[A-Za-z0-9.\-\[\]:]+(/\S*)?", url):
        raise UsageError(f"not an ACME directory URL: {url!r}",
                         hint="an https:// URL, e.g. https://acme-v02.api.letsencrypt.org/directory")
    return url


def validate_ca_bundle(path: str | Path) -> Path:
    bundle = Path(path).expanduser()
    try:
        text = bundle.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read the CA bundle {bundle}: {exc.strerror}",
                         hint="--ca-bundle takes a PEM file of the CA certificates that sign the ACME server's HTTPS") from exc
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise UsageError(f"{bundle} holds no PEM certificate", hint="--ca-bundle takes a PEM file of CA certificates")
    return bundle.resolve()


def issue_args(domain: str, email: str, *, staging: bool = False, dry_run: bool = False,
               server: str | None = None, dns_hook: str | None = None) -> list[str]:
    domain = validate_domain(domain)
    email = validate_email(email)
    if staging and server:
        raise UsageError("--staging and --acme-server exclude each other", hint="--staging is Let's Encrypt's staging CA")
    if domain.startswith("*.") and not dns_hook:
        raise UsageError(f"{domain} is a wildcard: only the DNS-01 challenge can prove it",
                         hint="add --dns-hook SCRIPT (docs/production.md, DNS-01)")
    if "*" in domain and not domain.startswith("*."):
        raise UsageError(f"not a valid domain name: {domain!r}", hint="a wildcard is *.example.com")
    args = ["certonly", "--non-interactive", "--agree-tos", "--email", email, "-d", domain,
            "--cert-name", cert_name(domain), "--keep-until-expiring"]
    if server:
        args += ["--server", validate_server(server)]
    if staging:
        args.append("--staging")
    if dns_hook:
        hook = Path(dns_hook).expanduser().resolve()
        if not (hook.is_file() and os.access(hook, os.X_OK)):
            raise UsageError(f"--dns-hook {dns_hook}: not an executable file", hint="chmod +x the script")
        args += ["--manual", "--preferred-challenges", "dns",
                 "--manual-auth-hook", f"{shlex.quote(str(hook))} add",
                 "--manual-cleanup-hook", f"{shlex.quote(str(hook))} remove"]
    if dry_run:
        args.append("--dry-run")
    return args


def cert_name(domain: str) -> str:
    """certbot's lineage name: the domain; a wildcard's without the `*.` (a file name)."""
    return domain.removeprefix("*.") + ("-wildcard" if domain.startswith("*.") else "")


def renew_args(name: str, *, dry_run: bool = False, webroot_challenge: bool = True) -> list[str]:
    args = ["renew", "--non-interactive", "--no-random-sleep-on-renew", "--cert-name", name]
    args += ["--dry-run"] if dry_run else ["--force-renewal"]  # montero decided it is due
    return args + (["--webroot"] if webroot_challenge else [])


# -- running certbot ---------------------------------------------------------------------------------
def certbot_command(project: Project, args: list[str], ca_bundle: Path | None = None) -> list[str]:
    """certbot on the host when installed, else the certbot image (MONTERO_CERTBOT_IMAGE) with the same folders.

    Both write into docker/certs/letsencrypt and answer HTTP-01 through docker/certs/webroot,
    which nginx serves on plain HTTP.
    """
    folder = certs_dir(project).resolve()
    args = _with_webroot_path(args, str(folder / "webroot") if shutil.which("certbot") else "/var/www/certbot")
    host = shutil.which("certbot")
    if host:
        dirs = ["--config-dir", str(folder / "letsencrypt"), "--work-dir", str(folder / "letsencrypt" / "work"),
                "--logs-dir", str(folder / "letsencrypt" / "logs")]
        return [host, *args, *dirs]
    image = os.environ.get(CERTBOT_IMAGE_ENV) or CERTBOT_DEFAULT_IMAGE
    extra = ["-v", f"{ca_bundle}:{CONTAINER_CA_BUNDLE}:ro", "-e", f"REQUESTS_CA_BUNDLE={CONTAINER_CA_BUNDLE}"] \
        if ca_bundle else []
    return ["docker", "run", "--rm", "--name", f"{project.name}-certbot", "--network", "host",
            "-v", f"{folder / 'letsencrypt'}:/etc/letsencrypt", "-v", f"{folder / 'webroot'}:/var/www/certbot",
            *extra, image, *args]


def _with_webroot_path(args: list[str], path: str) -> list[str]:
    """Webroot lineages: `--webroot -w PATH` (a renewal passes a bare --webroot, filled in here)."""
    wants = "--webroot" in args or (args[:1] == ["certonly"] and "--manual" not in args)
    rest = [a for a in args if a != "--webroot"]
    return [*rest, "--webroot", "-w", path] if wants else rest


def certbot_env(ca_bundle: Path | None) -> dict[str, str]:
    env = {**os.environ}
    if ca_bundle:
        env["REQUESTS_CA_BUNDLE"] = str(ca_bundle)
    return env


def printable(project: Project, args: list[str], ca_bundle: Path | None = None) -> str:
    cmd = shlex.join(certbot_command(project, args, ca_bundle))
    return f"REQUESTS_CA_BUNDLE={shlex.quote(str(ca_bundle))} {cmd}" if ca_bundle and shutil.which("certbot") else cmd


@dataclass
class CertbotRun:
    code: int
    output: str
    command: list[str]

    @property
    def ok(self) -> bool:
        return self.code == 0

    def reason(self) -> str:
        return certbot_reason(self.output, self.code)


def prepare_webroot(project: Project) -> Path:
    path = webroot(project) / ".well-known" / "acme-challenge"
    path.mkdir(parents=True, exist_ok=True)
    config_dir(project).mkdir(parents=True, exist_ok=True)
    return path


def run_certbot(project: Project, args: list[str], ca_bundle: Path | None = None,
                echo: Callable[[str], None] | None = None) -> CertbotRun:
    """Run certbot with its output captured (and passed to `echo` line by line, for --verbose)."""
    prepare_webroot(project)
    cmd = certbot_command(project, args, ca_bundle)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                text=True, env=certbot_env(ca_bundle))
    except FileNotFoundError as exc:
        raise CommandFailed(f"could not run {cmd[0]}", hint="install certbot (`apt-get install certbot`) or Docker") from exc
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if echo:
            echo(line.rstrip("\n"))
    try:
        code = proc.wait(timeout=CERTBOT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = 124
        lines.append(f"certbot did not finish within {CERTBOT_TIMEOUT} s\n")
    return CertbotRun(code, "".join(lines), cmd)


_NOISE = ("saving debug log", "ask for help", "- - -", "hint:", "see the logfile", "if you like certbot",
          "donating to", "processing /", "renewing an existing", "requesting a certificate", "account registered",
          "1 renew failure", "all renewals failed", "the following certificates could not", "simulating")


def certbot_reason(output: str, code: int = 1) -> str:
    """certbot's reason for a failure, in one line: the CA's problem per domain when it names
    one ("acme.test: connection: … connection refused"), else its error line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    problems: list[str] = []
    domain = kind = ""
    for line in lines:
        if line.startswith("Domain:"):
            domain = line.split(":", 1)[1].strip()
        elif line.startswith("Type:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("Detail:"):
            detail = line.split(":", 1)[1].strip()
            problems.append(": ".join(p for p in (domain, kind, detail) if p))
            domain = kind = ""
    if problems:
        return "; ".join(problems)
    for i, line in enumerate(lines):
        if line.startswith("An unexpected error occurred:") and i + 1 < len(lines):
            return lines[i + 1]
    for line in reversed(lines):
        low = line.lower()
        if ("error" in low or "failed" in low or "could not" in low or "timed out" in low or "did not" in low) \
                and not low.startswith(_NOISE):
            return line
    meaningful = [ln for ln in lines if not ln.lower().startswith(_NOISE) and not ln.startswith("/")]
    return meaningful[-1] if meaningful else f"certbot exited with code {code}"


# -- lineages (what certbot holds) ---------------------------------------------------------------------
@dataclass
class Lineage:
    name: str
    domains: list[str]
    not_after: str
    days_left: float
    authenticator: str
    server: str | None
    ca_bundle: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _renewal_conf(project: Project, name: str) -> dict[str, str]:
    path = config_dir(project) / "renewal" / f"{name}.conf"
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), value.strip())
    return values


def lineages(project: Project) -> list[Lineage]:
    """Every certificate certbot manages for this project, read from its renewal confs and live files."""
    from cryptography import x509

    folder = config_dir(project) / "renewal"
    bundles = _state(project).get("ca_bundles", {})
    out = []
    for conf in sorted(folder.glob("*.conf")) if folder.is_dir() else []:
        name = conf.stem
        cert = config_dir(project) / "live" / name / "cert.pem"
        try:
            parsed = x509.load_pem_x509_certificate(cert.read_bytes())
        except (OSError, ValueError):
            continue  # a broken lineage is certbot's to report
        try:
            san = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            domains = [str(d) for d in san.get_values_for_type(x509.DNSName)]
        except x509.ExtensionNotFound:
            domains = []
        values = _renewal_conf(project, name)
        left = (parsed.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() / 86400
        out.append(Lineage(name, domains, parsed.not_valid_after_utc.isoformat(), round(left, 2),
                           values.get("authenticator", "webroot"), values.get("server"), bundles.get(name)))
    return out


# -- montero's own record (the CA bundle per lineage) -----------------------------------------------------
def _state_path(project: Project) -> Path:
    return config_dir(project) / "montero.json"


def _state(project: Project) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(_state_path(project).read_text())
        return data
    except (OSError, ValueError):
        return {}


def remember_ca_bundle(project: Project, name: str, bundle: Path | None) -> None:
    data = _state(project)
    bundles = data.setdefault("ca_bundles", {})
    if bundle:
        bundles[name] = str(bundle)
    else:
        bundles.pop(name, None)
    path = _state_path(project)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# -- issue / renew -----------------------------------------------------------------------------------------
def issue(project: Project, args: list[str], ca_bundle: Path | None = None,
          echo: Callable[[str], None] | None = None) -> str:
    """Run `certbot certonly`; returns the lineage name. Raises CommandFailed with certbot's reason."""
    name = args[args.index("--cert-name") + 1]
    run = run_certbot(project, args, ca_bundle, echo)
    if not run.ok:
        raise CommandFailed(f"certbot could not get a certificate for {name}: {run.reason()}",
                            hint=f"the domain must resolve to this host and port 80 must reach nginx "
                            f"(`montero up --profile production`); certbot's log: {log_file(project)}")
    if "--dry-run" not in args:
        remember_ca_bundle(project, name, ca_bundle)
    return name


@dataclass
class RenewResult:
    days: int
    renewed: list[str] = field(default_factory=list)
    not_due: list[Lineage] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)  # --dry-run

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "renewed": self.renewed, "not_due": [lin.to_dict() for lin in self.not_due],
                "failed": self.failed, "checked": self.checked}


def renew(project: Project, days: int = RENEW_DAYS, *, dry_run: bool = False, ca_bundle: Path | None = None,
          echo: Callable[[str], None] | None = None, only: list[str] | None = None) -> RenewResult:
    """Renew every lineage that expires within `days` (all of them with dry_run, as a test).

    A failure of one lineage does not stop the others; each failure keeps its certbot reason.
    The files of a failed lineage are untouched, so nginx goes on serving the current certificate.
    """
    if days < 1 or days > 365:
        raise UsageError("--days must be between 1 and 365")
    result = RenewResult(days)
    for lin in lineages(project):
        if only and lin.name not in only:
            continue
        if not dry_run and lin.days_left >= days:
            result.not_due.append(lin)
            continue
        bundle = ca_bundle or (Path(lin.ca_bundle) if lin.ca_bundle else None)
        if bundle is not None and not bundle.is_file():
            result.failed[lin.name] = f"its CA bundle {bundle} is gone (pass --ca-bundle FILE)"
            continue
        run = run_certbot(project, renew_args(lin.name, dry_run=dry_run,
                                              webroot_challenge=lin.authenticator == "webroot"), bundle, echo)
        if not run.ok:
            result.failed[lin.name] = run.reason()
        elif dry_run:
            result.checked.append(lin.name)
        else:
            result.renewed.append(lin.name)
            if ca_bundle:
                remember_ca_bundle(project, lin.name, ca_bundle)
    return result


def cron_line(project: Project, montero: str | None = None) -> str:
    """A plain crontab line (records nothing doctor sees: prefer `montero schedule install --job renew=…`)."""
    exe = montero or shutil.which("montero") or f"{sys.executable} -m montero_ops"
    log = project.logs_dir / "tls-renew.log"
    return f"{RENEW_CRON} cd {project.root} && {exe} tls renew >> {log} 2>&1"
