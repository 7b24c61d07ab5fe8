"""A real SMTP server for tests (aiosmtpd), that can be told to answer 4xx or 5xx."""

from __future__ import annotations

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

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
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


def start(**options: Any) -> tuple[MailServer, Controller]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    handler = MailServer()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    return handler, controller
