"""The seam to the mail server: send one message, and say the moment it is accepted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Protocol

# Called once the server has accepted the message (before QUIT), with its answer, so
# the caller records "sent" before anything else can fail.
Accepted = Callable[[str], Awaitable[None]]


class Busy(Exception):
    """Not attempted: the process's one message between acceptance and record is
    another's, for longer than the caller would wait. Try again shortly, without
    counting an attempt."""


class Mailer(Protocol):
    async def send(self, message: EmailMessage, recipients: list[str],
                   accepted: Accepted, *, budget: float, wait: float) -> str:
        """Send within `budget` seconds of talking to the server; the server's answer.
        Waiting for the process's turn (at most `wait` seconds, then Busy) and the
        caller's `accepted` are not counted in it. Raises PermanentError when the server
        refuses for good (5xx), anything else when it may pass."""
