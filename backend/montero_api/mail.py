"""Outgoing mail through the MAIL_* settings with the standard library's smtplib."""

from __future__ import annotations

import logging
import smtplib
import ssl
from email.message import EmailMessage

from .settings import Settings

log = logging.getLogger("montero_api.mail")


class MailError(RuntimeError):
    pass


def send_mail(settings: Settings, to: str, subject: str, body: str) -> None:
    sender = settings.MAIL_DEFAULT_SENDER or settings.MAIL_USERNAME or "no-reply@localhost"
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        # Port 465 speaks TLS from the first byte; everything else may upgrade with STARTTLS.
        if settings.MAIL_PORT == 465:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.MAIL_SERVER, settings.MAIL_PORT, timeout=10, context=ssl.create_default_context()
            )
        else:
            smtp = smtplib.SMTP(settings.MAIL_SERVER, settings.MAIL_PORT, timeout=10)
        with smtp:
            if settings.MAIL_USE_TLS and settings.MAIL_PORT != 465:
                smtp.starttls(context=ssl.create_default_context())
            if settings.MAIL_USERNAME and settings.MAIL_PASSWORD:
                smtp.login(settings.MAIL_USERNAME, settings.MAIL_PASSWORD)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(f"could not send mail via {settings.MAIL_SERVER}:{settings.MAIL_PORT}: {exc}") from exc
    log.info("mail sent to %s: %s", to, subject)
