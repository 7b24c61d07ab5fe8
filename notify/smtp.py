"""Sending through SMTP with aiosmtplib, and what its failures mean.

STARTTLS is required when asked for (`SMTP_TLS=starttls`) and never tried
otherwise: opportunistic STARTTLS would send in the clear whenever a
man-in-the-middle strips the server's offer.

A message is recorded as sent as soon as the server accepts it, before QUIT,
and one worker has at most one message between the server's acceptance and
that record: a worker killed at any moment can make the mail server see one
message twice (under the same Message-ID), never more (CONTRACT §7).
"""

from __future__ import annotations

import asyncio
import contextlib
from email.message import EmailMessage

import aiosmtplib

from core.errors import PermanentError, Unavailable
from core.mail import Accepted
from core.settings import Settings


class SmtpMailer:
    """The `core.mail.Mailer` of one process."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        # Held from DATA until the caller's record of acceptance: one message in the window.
        self._turn = asyncio.Lock()

    async def send(self, message: EmailMessage, recipients: list[str], accepted: Accepted, *,
                   budget: float) -> str:
        try:
            async with asyncio.timeout(budget):
                return await self._send(message, recipients, accepted)
        except TimeoutError:
            raise Unavailable(f"the mail server did not finish within {budget:.0f} s") from None

    async def _send(self, message: EmailMessage, recipients: list[str],
                    accepted: Accepted) -> str:
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_username, password=settings.smtp_password,
            use_tls=settings.smtp_tls == "tls", start_tls=settings.smtp_tls == "starttls",
            timeout=self.timeout)
        try:
            await client.connect()
            async with self._turn:
                _, response = await client.send_message(
                    message, sender=settings.mail_from, recipients=recipients)
                await accepted(response)
            return response
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [r.code for r in refused.recipients]
            if all(code >= 500 for code in codes):
                raise PermanentError(f"recipients refused: {codes}") from refused
            raise
        except aiosmtplib.SMTPResponseException as answer:
            if answer.code >= 500:
                raise PermanentError(f"{answer.code} {answer.message}") from answer
            raise
        finally:
            await _leave(client)


async def _leave(client: aiosmtplib.SMTP) -> None:
    """QUIT, briefly; a server that does not answer is simply dropped."""
    if not client.is_connected:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.quit(), 2)
    if client.is_connected:
        client.close()
