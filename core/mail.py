"""The seam to the mail server: send one message, and say the moment it is accepted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Protocol

# Called once the server has accepted the message (before QUIT), with its answer, so
# the caller records "sent" before anything else can fail.
Accepted = Callable[[str], Awaitable[None]]


class Mailer(Protocol):
    async def send(self, message: EmailMessage, recipients: list[str],
                   accepted: Accepted, *, budget: float) -> str:
        """Send within `budget` seconds; the server's answer. Raises PermanentError when
        the server refuses for good (5xx), anything else when it may pass."""
