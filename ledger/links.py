"""What happens to an invoice's links when it is paid, voided or a link is cancelled.

Kept apart from `ledger.invoices` (which calls it) and `ledger.checkout` (which
opens links) so neither imports the other.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import asyncpg


def new_token() -> str:
    """A pay-link secret: 192 random bits, unrelated to any id."""
    return secrets.token_urlsafe(24)


async def owe_expiry(conn: asyncpg.Connection, invoice_id: str, *,
                     request_id: str | None = None, session_id: str | None = None) -> None:
    """Owe an expiry at Stripe for every open Checkout Session of the invoice
    (or of one of its requests, or one session), performed after the commit by
    the outbox job."""
    await conn.execute(
        """insert into outbox (kind, key, payload)
           select 'stripe_expire_session', 'expire:' || id, jsonb_build_object('session_id', id)
           from checkout_sessions
           where invoice_id = $1 and status = 'open'
             and ($2::text is null or payment_request_id = $2)
             and ($3::text is null or id = $3)
           on conflict (key) do nothing""",
        invoice_id, request_id, session_id,
    )


async def end_active_requests(conn: asyncpg.Connection, invoice_id: str, status: str) -> None:
    """Supersede (invoice paid) or cancel (invoice voided) the active request, at once."""
    await conn.execute(
        """update payment_requests set status = $2, ended_at = now(), updated_at = now()
           where invoice_id = $1 and status = 'active'""",
        invoice_id, status,
    )
    await owe_expiry(conn, invoice_id)


def recipients_json(to: str | list[str], cc: list[str], bcc: list[str]) -> str:
    return json.dumps({"to": to, "cc": cc, "bcc": bcc})


def pay_url(public_url: str, token: str) -> str:
    return f"{public_url}/pay/{token}"


def request_view(row: asyncpg.Record, public_url: str) -> dict[str, Any]:
    recipients = row["recipients"]
    return {
        "id": row["id"],
        "invoice_id": row["invoice_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "status": row["status"],
        "url": pay_url(public_url, row["token"]),
        "to": recipients["to"],
        "cc": recipients["cc"],
        "bcc": recipients["bcc"],
        "note": row["note"],
        "reminders_sent": row["reminders_sent"],
        "created_at": row["created_at"].isoformat(),
    }
