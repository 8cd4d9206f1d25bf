"""`montero tls …`: certificates for the production nginx (self-signed, Let's Encrypt, renewal, status)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from montero_ops.commands._options import JsonOption
from montero_ops.state import get_state

tls_app = typer.Typer(
    help="TLS certificates for nginx: self-signed, Let's Encrypt, renewal, days left.\n\n"
    "Example: montero tls self-signed --domain staging.example.com",
    no_args_is_help=True,
)

DomainOption = Annotated[str, typer.Option("--domain", "-d", help="Domain name the certificate is for.")]


def _reload(ctx: typer.Context) -> None:
    from montero_ops.output import info, success
    from montero_ops.services.tls import reload_nginx

    state = get_state(ctx)
    project = state.project().with_profiles("production")
    if reload_nginx(state.client(project)):
        success("nginx reloaded: HTTPS is served with the new certificate")
    else:
        info("nginx is not running; it serves the certificate when started (`montero up --profile production`)")


def _show(json: bool, ctx: typer.Context) -> None:
    from montero_ops.output import print_json
    from montero_ops.services.tls import status

    st = status(get_state(ctx).project())
    if json:
        print_json(st.to_dict())
        return
    if not st.present:
        typer.echo(f"no certificate at {st.path}")
        return
    typer.echo(f"certificate: {st.path} ({st.source})")
    typer.echo(f"subject:     {st.subject}")
    typer.echo(f"issuer:      {st.issuer}")
    typer.echo(f"domains:     {', '.join(st.domains) or '-'}")
    typer.echo(f"expires:     {st.not_after} ({st.days_left} days left)")


@tls_app.command("self-signed")
def self_signed_cmd(
    ctx: typer.Context,
    domain: DomainOption = "localhost",
    days: Annotated[int, typer.Option("--days", help="Validity in days.")] = 365,
    json: JsonOption = False,
) -> None:
    """Create a self-signed certificate (local and staging use) and reload nginx if it runs.

    Example: montero tls self-signed --domain staging.example.com
    """
    from montero_ops.output import success
    from montero_ops.services.tls import self_signed

    st = self_signed(get_state(ctx).project(), domain=domain, days=days)
    success(f"self-signed certificate for {domain} written to {st.path} (valid {st.days_left} days)")
    _reload(ctx)
    if json:
        _show(True, ctx)


CaBundleOption = Annotated[
    str | None,
    typer.Option("--ca-bundle", help="PEM file of the CAs behind the ACME server's HTTPS (a private CA, Pebble); "
                 "kept for renewals."),
]


def _when(iso: str | None) -> str:
    return f"{iso[:10]} {iso[11:16]} UTC" if iso else "?"


def _echo(ctx: typer.Context) -> Callable[[str], None] | None:
    """--verbose: certbot's own output, line by line on stderr."""
    if not get_state(ctx).verbose:
        return None
    return lambda line: typer.echo(f"certbot: {line}", err=True)


@tls_app.command("issue")
def issue_cmd(
    ctx: typer.Context,
    domain: DomainOption,
    email: Annotated[str, typer.Option("--email", "-e", help="Address for the CA's expiry notices.")],
    staging: Annotated[bool, typer.Option("--staging", help="Use Let's Encrypt's staging CA (no rate limits).")] = False,
    acme_server: Annotated[str | None, typer.Option(
        "--acme-server", help="ACME directory URL of another CA (default: Let's Encrypt production).")] = None,
    ca_bundle: CaBundleOption = None,
    dns_hook: Annotated[str | None, typer.Option(
        "--dns-hook", help="DNS-01 instead of the webroot: SCRIPT add|remove publishes the TXT record "
        "(needed for *.domain).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Ask certbot for a test run; nothing is saved.")] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the certbot command.")] = False,
) -> None:
    """Get a certificate from Let's Encrypt (or another ACME CA) through certbot, then reload nginx.

    The HTTP-01 challenge is answered from the webroot nginx serves, so nginx must run
    (`montero up --profile production`) and DOMAIN must resolve to this host on port 80.
    certbot on the host is used when installed, else the certbot image (MONTERO_CERTBOT_IMAGE).

    Example: montero tls issue --domain example.com --email ops@example.com
    """
    from montero_ops.output import spinner, success
    from montero_ops.services import acme
    from montero_ops.services.tls import link_letsencrypt, status

    project = get_state(ctx).project()
    bundle = acme.validate_ca_bundle(ca_bundle) if ca_bundle else None
    args = acme.issue_args(domain, email, staging=staging, dry_run=dry_run, server=acme_server, dns_hook=dns_hook)
    if print_only:
        typer.echo(acme.printable(project, args, bundle))
        return
    with spinner(f"asking the CA for a certificate for {domain} (certbot)"):
        name = acme.issue(project, args, bundle, _echo(ctx))
    if dry_run:
        success("certbot dry run passed: the challenge works")
        return
    link_letsencrypt(project, name)
    st = status(project)
    success(f"certificate for {', '.join(st.domains)} installed, issuer {st.issuer}, expires {_when(st.not_after)}")
    _reload(ctx)


@tls_app.command("renew")
def renew_cmd(
    ctx: typer.Context,
    days: Annotated[int, typer.Option("--days", help="Renew certificates that expire within this many days.")] = 30,
    ca_bundle: CaBundleOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Test every renewal with the CA; nothing is saved.")] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the certbot commands.")] = False,
    json: JsonOption = False,
) -> None:
    """Renew the certificates that expire within --days (30), then reload nginx; exit 0 when none is due.

    A failed renewal exits 1 with certbot's reason; the current certificate stays in place and served.
    Schedule it with `montero schedule install --job renew=02:45` (failures show in `montero doctor`).

    Example: montero tls renew
    """
    from montero_ops.errors import CommandFailed
    from montero_ops.output import info, print_json, spinner, success
    from montero_ops.services import acme
    from montero_ops.services.tls import status

    project = get_state(ctx).project()
    bundle = acme.validate_ca_bundle(ca_bundle) if ca_bundle else None
    found = acme.lineages(project)
    if not found:
        st = status(project)
        what = "the active certificate is self-signed" if st.present and st.self_signed else "no ACME certificate here"
        info(f"{what}: nothing for certbot to renew (`montero tls issue` to get one)")
        if json:
            print_json(acme.RenewResult(days).to_dict())
        return
    if print_only:
        for lin in found:
            args = acme.renew_args(lin.name, dry_run=dry_run, webroot_challenge=lin.authenticator == "webroot")
            typer.echo(acme.printable(project, args, bundle or (Path(lin.ca_bundle) if lin.ca_bundle else None)))
        return
    with spinner("renewing what is due (certbot)"):
        result = acme.renew(project, days, dry_run=dry_run, ca_bundle=bundle, echo=_echo(ctx))
    for lin in result.not_due:
        info(f"{lin.name}: not due, expires {_when(lin.not_after)} ({lin.days_left:.0f} days left, renewed under {days})")
    for name in result.checked:
        success(f"{name}: the renewal dry run passed")
    for name in result.renewed:
        success(f"{name}: renewed")
    if result.renewed:
        _reload(ctx)
    if json:
        print_json(result.to_dict())
    if not (result.renewed or result.failed or result.checked):
        info("nothing is due")
    if result.failed:
        # certbot's reason names the domain first; said once is enough.
        reasons = "; ".join(f"{name}: {why.removeprefix(name + ': ')}" for name, why in result.failed.items())
        st = status(project)
        kept = f"the current certificate (expires {_when(st.not_after)}) is still served" if st.present else "nothing changed"
        raise CommandFailed(f"certbot could not renew {reasons}",
                            hint=f"{kept}; port 80 must reach nginx from the CA; certbot's log: {acme.log_file(project)}")


@tls_app.command("status")
def status_cmd(
    ctx: typer.Context,
    warn_days: Annotated[int, typer.Option("--warn-days", help="Exit 1 when fewer days are left.")] = 0,
    json: JsonOption = False,
) -> None:
    """Show the active certificate, its domains and the days left; exit 1 when missing or due.

    Example: montero tls status --warn-days 21
    """
    from montero_ops.errors import CommandFailed
    from montero_ops.services.tls import status

    _show(json, ctx)
    st = status(get_state(ctx).project())
    if not st.present:
        raise CommandFailed("no certificate", hint="run `montero tls self-signed` or `montero tls issue`")
    if st.days_left is not None and st.days_left < warn_days:
        raise CommandFailed(f"the certificate expires in {st.days_left} days", hint="run `montero tls renew`")


@tls_app.command("cron")
def cron_cmd(ctx: typer.Context) -> None:
    """Print a plain crontab line that renews daily (records nothing: prefer `schedule install`).

    Example: (crontab -l; montero tls cron) | crontab -
    """
    from montero_ops.services.acme import cron_line

    typer.echo(cron_line(get_state(ctx).project()))


def register(app: typer.Typer) -> None:
    app.add_typer(tls_app, name="tls")
