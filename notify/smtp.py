"""Sending through SMTP with aiosmtplib, and what its failures mean.

STARTTLS is required when asked for (`SMTP_TLS=starttls`) and never tried
otherwise: opportunistic STARTTLS would send in the clear whenever a
man-in-the-middle strips the server's offer.
"""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from core.errors import PermanentError
from core.settings import Settings


async def send(message: EmailMessage, recipients: list[str], settings: Settings) -> str:
    try:
        _, response = await aiosmtplib.send(
            message,
            sender=settings.mail_from,
            recipients=recipients,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            use_tls=settings.smtp_tls == "tls",
            start_tls=settings.smtp_tls == "starttls",
            timeout=30,
        )
    except aiosmtplib.SMTPRecipientsRefused as refused:
        codes = [r.code for r in refused.recipients]
        if all(code >= 500 for code in codes):
            raise PermanentError(f"recipients refused: {codes}") from refused
        raise
    except aiosmtplib.SMTPResponseException as answer:
        if answer.code >= 500:
            raise PermanentError(f"{answer.code} {answer.message}") from answer
        raise
    return response

