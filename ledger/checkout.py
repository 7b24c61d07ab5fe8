"""Opening a pay link: reuse the link's open checkout session or make one (§6).

The processor is passed in (`core.processor.Processor`), so this module
knows what a session must say, not how to reach any processor. The invoice
row stays locked while a session is made, so two customers opening one link
at once get one session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from core.errors import NotFound
from core.processor import Processor, SessionSpec
from core.tx import Books
from ledger.outbox import owe_expiry
from ledger.status import is_open, locked, remaining_of, status_of


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str


@dataclass(frozen=True, slots=True)
class Gone:
    """Why the link no longer takes payments: a request or an invoice status."""

    reason: str


async def open_link(books: Books, token: str, processor: Processor) -> Redirect | Gone:
    async with books.transaction() as conn:
        request = await conn.fetchrow(
            "select id, invoice_id from payment_requests where token = $1", token)
        invoice_id = request["invoice_id"] if request else await conn.fetchval(
            "select id from invoices where pay_token = $1", token)
        if invoice_id is None:
            raise NotFound("pay link", "…")  # never echo a token
        invoice = await locked(conn, invoice_id)
        if request is not None:
            request = await conn.fetchrow(
                "select * from payment_requests where id = $1 for update", request["id"])
            if request["status"] != "active":
                return Gone(request["status"])
        if not is_open(invoice):
            return Gone(status_of(invoice))
        # A request pays its amount; Pay Now pays what is outstanding right now.
        amount = request["amount"] if request is not None else remaining_of(invoice)
        request_id = request["id"] if request is not None else None

        session = await conn.fetchrow(
            """select id, url, amount from checkout_sessions
               where invoice_id = $1 and payment_request_id is not distinct from $2
                 and status = 'open'
                 and (expires_at is null or expires_at > now() + interval '10 minutes')
               order by created_at desc limit 1""",
            invoice_id, request_id,
        )
        if session is not None and session["amount"] == amount:
            return Redirect(session["url"])
        if session is not None:
            # Pay Now for an amount no longer outstanding: retire that session.
            await owe_expiry(conn, invoice_id, session_id=session["id"])
        made_before = await conn.fetchval(
            """select count(*) from checkout_sessions
               where invoice_id = $1 and payment_request_id is not distinct from $2""",
            invoice_id, request_id,
        )
        email = await conn.fetchval("select email from customers where id = $1",
                                    invoice["customer_id"])
        link = f"{books.public_url}/pay/{token}"
        made = await processor.create_checkout(SessionSpec(
            invoice_id=invoice_id, invoice_number=invoice["number"],
            payment_request_id=request_id, amount=amount, currency=invoice["currency"],
            customer_email=email, success_url=f"{link}/done", cancel_url=link,
            idempotency_key=f"checkout:{invoice_id}:{request_id or 'pay-now'}:{amount}:{made_before}",
        ))
        await conn.execute(
            """insert into checkout_sessions (id, processor, invoice_id, payment_request_id,
                                              amount, currency, url, expires_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               on conflict (id) do nothing""",
            made.id, processor.name, invoice_id, request_id, amount, invoice["currency"],
            made.url,
            datetime.fromtimestamp(made.expires_at, UTC) if made.expires_at else None,
        )
        return Redirect(made.url)


async def session_finished(conn: asyncpg.Connection, session_id: str, status: str) -> None:
    """A session Stripe says is complete or expired is no longer reused or expired."""
    await conn.execute(
        """update checkout_sessions set status = $2, updated_at = now()
           where id = $1 and status = 'open'""",
        session_id, status,
    )
