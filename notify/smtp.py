"""Sending through SMTP with aiosmtplib, and what its failures mean.

STARTTLS is required when asked for (`SMTP_TLS=starttls`) and never tried
otherwise: opportunistic STARTTLS would send in the clear whenever a
man-in-the-middle strips the server's offer.

A message is recorded as sent as soon as the server accepts it, before QUIT,
and one worker has at most one message between the server's acceptance and
that record: a worker killed at any moment can make the mail server see one
message twice (under the same Message-ID), never more (CONTRACT §7).

An attempt's time limit (`budget`) counts only the time spent talking to the
server. Waiting for the process's turn is not a failure of the server (a
wait too long is `Busy`: tried again, not counted), and the record of an
accepted message is not cut short by it: a slow database would otherwise
turn a message the server has into one sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from email.message import EmailMessage
from typing import TypeVar

import aiosmtplib

from core.errors import PermanentError, Unavailable
from core.mail import Accepted, Busy
from core.settings import Settings

T = TypeVar("T")

# The goodbye is a courtesy: waited for at most this long (less when the attempt's
# network time is spent, never under QUIT_AT_LEAST), then the connection is dropped.
QUIT_WITHIN = 2.0
QUIT_AT_LEAST = 0.5


class _NetworkTime:
    """What is left of an attempt's time limit: spent only while talking to the server."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.left = budget

    async def spend(self, call: Awaitable[T]) -> T:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(max(self.left, 0.0)):
                return await call
        except TimeoutError:
            raise Unavailable(
                f"the mail server did not finish within {self.budget:.0f} s") from None
        finally:
            self.left -= loop.time() - started


class SmtpMailer:
    """The `core.mail.Mailer` of one process."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        # Held from DATA until the caller's record of acceptance: one message in the window.
        self._turn = asyncio.Lock()

    async def send(self, message: EmailMessage, recipients: list[str], accepted: Accepted, *,
                   budget: float, wait: float) -> str:
        settings = self.settings
        client = aiosmtplib.SMTP(
            hostname=settings.smtp_host, port=settings.smtp_port,
            username=settings.smtp_username, password=settings.smtp_password,
            use_tls=settings.smtp_tls == "tls", start_tls=settings.smtp_tls == "starttls",
            timeout=self.timeout)
        network = _NetworkTime(budget)
        try:
            await network.spend(client.connect())
            await self._take_turn(wait)
            try:
                _, response = await network.spend(client.send_message(
                    message, sender=settings.mail_from, recipients=recipients))
                await accepted(response)  # bounded by the caller, not by `budget`
            finally:
                self._turn.release()
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
            await _leave(client, min(QUIT_WITHIN, max(QUIT_AT_LEAST, network.left)))

    async def _take_turn(self, wait: float) -> None:
        try:
            async with asyncio.timeout(wait):
                await self._turn.acquire()
        except TimeoutError:
            raise Busy(f"another message held the turn for {wait:.1f} s") from None


async def _leave(client: aiosmtplib.SMTP, within: float) -> None:
    """QUIT, briefly; a server that does not answer is simply dropped."""
    if not client.is_connected:
        return
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.quit(), within)
    if client.is_connected:
        client.close()
