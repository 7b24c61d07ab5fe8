"""A local mail catcher for `make run`: an SMTP server that prints each mail in full.

    python -m devtools.mailcatcher        (listens on SMTP_HOST:SMTP_PORT, 127.0.0.1:1025)
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import os
from typing import Any

from aiosmtpd.smtp import SMTP


class Printer:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        lines = [
            "",
            f"──── mail: {message['X-Notification-Kind']} " + "─" * 40,
            f"From:       {message['From']}",
            f"To:         {', '.join(envelope.rcpt_tos)}",
            f"Subject:    {message['Subject']}",
            f"Message-ID: {message['Message-ID']}   X-Invoice-Id: {message['X-Invoice-Id']}",
            "",
            text.get_content().rstrip() if text is not None else "(no text part)",
            "",
            f"(and an HTML part of {len(html.get_content())} characters)" if html is not None
            else "(no HTML part)",
            *(f"(attached: {part.get_filename()}, {part.get_content_type()}, "
              f"{len(part.get_content())} bytes)" for part in message.iter_attachments()),
        ]
        print("\n".join(lines), flush=True)
        return "250 OK"


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Printer()), host, port)
    print(f"mail catcher on {host}:{port}: every mail settle sends is printed here", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    host = os.environ.get("SMTP_HOST", "127.0.0.1")
    port = int(os.environ.get("SMTP_PORT", "1025"))
    try:
        asyncio.run(serve("127.0.0.1" if host == "localhost" else host, port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
