"""A real SMTP server for tests (aiosmtpd), that can be told to answer 4xx or 5xx."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class Received:
    envelope_from: str
    envelope_to: list[str]
    message: EmailMessage

    @property
    def kind(self) -> str:
        return str(self.message["X-Notification-Kind"])

    def part(self, subtype: str) -> str:
        body = self.message.get_body(preferencelist=(subtype,))
        assert body is not None
        return str(body.get_content())


@dataclass
class MailServer:
    received: list[Received] = field(default_factory=list)
    # While set, DATA is answered with this (e.g. "451 4.3.0 try later").
    answer: str | None = None
    refused: int = 0
    refused_ids: list[str] = field(default_factory=list)
    # While set, DATA is answered this many seconds late (a slow or hung server).
    data_delay: float = 0.0
    # Each test's turn; a DATA answered after its test ended is not recorded.
    generation: int = 0
    # While set, QUIT is answered this many seconds late; the peers waiting for it.
    quit_delay: float = 0.0
    quitting: list[tuple[str, int]] = field(default_factory=list)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        if self.quit_delay:
            self.quitting.append(session.peer)
            try:
                await asyncio.sleep(self.quit_delay)
            finally:
                self.quitting.remove(session.peer)
        return "221 Bye"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_delay:
            generation = self.generation
            await asyncio.sleep(self.data_delay)
            if generation != self.generation:  # a later test's server now: not its mail
                return "451 4.3.0 gone"
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        if self.answer:
            self.refused += 1
            self.refused_ids.append(str(message["Message-ID"]))
            return self.answer
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      message))  # type: ignore[arg-type]
        return "250 OK"

    def of_kind(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    def notifications_of_kind(self, kind: str) -> list[Received]:
        """One message per notification: a resend (same Message-ID) counted once."""
        seen: dict[str, Received] = {}
        for r in self.of_kind(kind):
            seen.setdefault(str(r.message["Message-ID"]), r)
        return list(seen.values())

    def resends(self) -> int:
        """How many messages arrived more than once (always under one Message-ID)."""
        ids = [str(r.message["Message-ID"]) for r in self.received]
        return len(ids) - len(set(ids))


def start(**options: Any) -> tuple[MailServer, Controller]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = MailServer()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    return handler, controller
