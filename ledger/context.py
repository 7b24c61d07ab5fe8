"""What a transaction knows, handed explicitly to what it calls.

The event job's one claiming statement (`ledger.inbox._claim`) locks the event
and its invoice and reads the invoice's customer and the enabled webhook
endpoints at once; `Known.claimed` holds those rows, and the job passes the
object down (`known=`) to the functions that would otherwise read them again:
`ledger.locks.invoice` takes the locked invoice (once), `delivery.outbox.
invoice_audience` its audience, `delivery.outbound.owe_event` the endpoints.
Every transaction that owes a webhook message hands one down: it carries how
links are written (`urls`: the public URL, whether pay links exist), so a snapshot
owed in it carries its real links. A fresh `Known(books)` (API calls, crons)
holds nothing read yet: each function reads its rows, and the endpoints are read
once and kept there for the rest of the transaction (a scan owing many messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

Endpoint = Mapping[str, Any]  # {id, events}


class Urls(Protocol):
    """What links are written with: the public base URL, and whether pay links exist (a
    processor takes payments). `core.tx.Books` is one."""

    @property
    def public_url(self) -> str: ...

    @property
    def can_pay(self) -> bool: ...


@dataclass(slots=True)
class Known:
    """How the caller's transaction writes links, and the rows it already read. The invoice
    is taken once (`take_invoice`):
    later locks read afresh, since the row may have changed meanwhile. The audience holds
    what no money movement changes (addresses, number, currency, total, page token, due
    date), so it serves the whole transaction."""

    # How links are written in what the transaction owes (reads.views).
    urls: Urls
    invoice_id: str | None = None
    # The invoice row locked with the event, until a lock of it takes it.
    invoice: asyncpg.Record | None = None
    audience: dict[str, Any] | None = None
    # The enabled endpoints; None until read.
    endpoints: list[Endpoint] | None = None

    @classmethod
    def claimed(cls, row: asyncpg.Record, urls: Urls) -> Known:
        """What the event's claim read: its invoice's row with the customer's columns
        (customer_*, all null when the invoice is unknown) and the endpoints (event_endpoints)."""
        endpoints: list[Endpoint] = row["event_endpoints"] or []
        if row["id"] is None:
            return cls(urls, endpoints=endpoints)
        return cls(urls, row["id"], row, audience_of(row), endpoints)

    def take_invoice(self, invoice_id: str) -> asyncpg.Record | None:
        """The locked invoice row, once, when it is `invoice_id`'s; None otherwise."""
        if self.invoice is None or self.invoice_id != invoice_id:
            return None
        row, self.invoice = self.invoice, None
        return row

    def audience_for(self, invoice_id: str) -> dict[str, Any] | None:
        return self.audience if self.invoice_id == invoice_id else None


def audience_of(row: asyncpg.Record) -> dict[str, Any]:
    """Who hears of an invoice and what mails say of it, from its row with the customer's
    email, name and locale (customer_*)."""
    email = row["customer_email"]
    recipients = [email] + [e for e in row["notify_emails"] if e != email]
    return {"to": list(dict.fromkeys(recipients)), "notify_emails": list(row["notify_emails"]),
            "number": row["number"],
            "currency": row["currency"], "total": row["total"],
            "customer_name": row["customer_name"], "locale": row["customer_locale"],
            "view_token": row["view_token"], "due_date": row["due_date"]}
