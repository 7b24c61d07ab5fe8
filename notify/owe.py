"""Owing an email: one outbox row per notification, keyed so it is owed once (§7).

Called inside the transaction that makes the notification due (a capture, an
invoice becoming paid, a request created), so the mail exists exactly when
the change does. The payload holds what the mail says, as of that moment.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import asyncpg

Kind = Literal["payment_request", "reminder", "payment_received", "invoice_paid", "credit_issued"]


async def owe_email(conn: asyncpg.Connection, kind: Kind, key: str, *, invoice_id: str,
                    to: list[str], cc: list[str] | None = None, bcc: list[str] | None = None,
                    **context: Any) -> None:
    payload = {"kind": kind, "invoice_id": invoice_id, "to": to, "cc": cc or [],
               "bcc": bcc or [], "context": context}
    await conn.execute(
        """insert into outbox (kind, key, payload) values ('email', $1, $2)
           on conflict (key) do nothing""",
        f"mail:{kind}:{key}", json.dumps(payload),
    )


async def invoice_audience(conn: asyncpg.Connection, invoice_id: str) -> dict[str, Any]:
    """The customer and notify_emails of an invoice, with what mails say about it."""
    row = await conn.fetchrow(
        """select i.number, i.currency, i.total, i.notify_emails, c.email, c.name
           from invoices i join customers c on c.id = i.customer_id where i.id = $1""",
        invoice_id,
    )
    recipients = [row["email"]] + [e for e in row["notify_emails"] if e != row["email"]]
    return {"to": list(dict.fromkeys(recipients)), "number": row["number"],
            "currency": row["currency"], "total": row["total"], "customer_name": row["name"]}


async def owe_request_mail(conn: asyncpg.Connection, request: asyncpg.Record, kind: Kind,
                           key: str, url: str) -> None:
    """payment_request or reminder: to the request's own recipients, with its link."""
    recipients = request["recipients"]
    to = recipients["to"] if isinstance(recipients["to"], list) else [recipients["to"]]
    audience = await invoice_audience(conn, request["invoice_id"])
    await owe_email(
        conn, kind, key, invoice_id=request["invoice_id"], to=to, cc=recipients["cc"],
        bcc=recipients["bcc"], amount=request["amount"], currency=request["currency"], url=url,
        note=request["note"], number=audience["number"], customer_name=audience["customer_name"],
        reminder=request["reminders_sent"],
    )
