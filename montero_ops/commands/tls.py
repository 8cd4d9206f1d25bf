"""`montero tls …`: certificates for the production nginx (self-signed, Let's Encrypt, renewal, status)."""

from __future__ import annotations

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


@tls_app.command("issue")
def issue_cmd(
    ctx: typer.Context,
    domain: DomainOption,
    email: Annotated[str, typer.Option("--email", "-e", help="Address for Let's Encrypt's expiry notices.")],
    staging: Annotated[bool, typer.Option("--staging", help="Use Let's Encrypt's staging CA (no rate limits).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Ask certbot for a test run; nothing is saved.")] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the certbot command.")] = False,
) -> None:
    """Get a Let's Encrypt certificate through certbot's webroot challenge served by nginx.

    nginx must run (`montero up --profile production`) and DOMAIN must resolve to this host on port 80.
    certbot on the host is used when installed, else the certbot image (MONTERO_CERTBOT_IMAGE).

    Example: montero tls issue --domain example.com --email ops@example.com
    """
    from montero_ops.output import success
    from montero_ops.services.tls import certbot_command, issue_args, link_letsencrypt, run_certbot

    project = get_state(ctx).project()
    args = issue_args(domain, email, staging=staging, dry_run=dry_run)
    if print_only:
        typer.echo(" ".join(certbot_command(project, args)))
        return
    run_certbot(project, args)
    if dry_run:
        success("certbot dry run passed: the webroot challenge works")
        return
    link_letsencrypt(project, domain.strip().lower())
    success(f"certificate for {domain} installed")
    _reload(ctx)


@tls_app.command("renew")
def renew_cmd(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Ask certbot for a test run.")] = False,
    print_only: Annotated[bool, typer.Option("--print", help="Only print the certbot command.")] = False,
) -> None:
    """Renew Let's Encrypt certificates due within 30 days, then reload nginx (run it from cron).

    Example: montero tls renew
    """
    from montero_ops.output import info
    from montero_ops.services.tls import certbot_command, renew_args, run_certbot, status

    project = get_state(ctx).project()
    st = status(project)
    if st.present and st.source == "self-signed":
        info("the active certificate is self-signed: nothing for certbot to renew (`montero tls self-signed` again)")
        return
    if print_only:
        typer.echo(" ".join(certbot_command(project, renew_args(dry_run))))
        return
    run_certbot(project, renew_args(dry_run))
    if not dry_run:
        _reload(ctx)


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
    """Print the crontab line that renews certificates daily.

    Example: (crontab -l; montero tls cron) | crontab -
    """
    from montero_ops.services.tls import cron_line

    typer.echo(cron_line(get_state(ctx).project()))


def register(app: typer.Typer) -> None:
    app.add_typer(tls_app, name="tls")
