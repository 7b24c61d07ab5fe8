"""Opening a pay link: reuse the link's open checkout session or make one (§6).

The processor is passed in (`core.processor.Processor`), so this module
knows what a session must say, not how to reach any processor. No row stays
locked while the processor is asked: the link is planned in one short
transaction (with the invoice locked), the session is made with no
transaction open, and it is recorded in a second short transaction that
checks again that the link still takes payments. Two customers opening one
link at once plan the same idempotency key, so the processor gives them one
session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from core.errors import NotFound
from core.processor import Processor, SessionMade, SessionSpec
from core.tx import Books
from ledger.outbox import owe_expiry
from ledger.status import is_open, locked, remaining_of, status_of


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str


@dataclass(frozen=True, slots=True)
class Gone:
    """Why the link no longer takes payments: a request or an invoice status, or
    "unpayable" (an amount the processor would refuse)."""

    reason: str


async def open_link(books: Books, token: str, processor: Processor) -> Redirect | Gone:
    planned = await _plan(books, token, processor)
    if not isinstance(planned, SessionSpec):
        return planned
    made = await processor.create_checkout(planned)  # no transaction is open
    return await _record(books, planned, made, processor)


async def _link(conn: asyncpg.Connection, token: str) -> tuple[str, str | None]:
    """(invoice id, request id or None for Pay Now) of a link token."""
    request = await conn.fetchrow(
        "select id, invoice_id from payment_requests where token = $1", token)
    if request is not None:
        return request["invoice_id"], request["id"]
    invoice_id = await conn.fetchval("select id from invoices where pay_token = $1", token)
    if invoice_id is None:
        raise NotFound("pay link", "…")  # never echo a token
    return invoice_id, None


async def _still_payable(conn: asyncpg.Connection, invoice_id: str,
                         request_id: str | None) -> tuple[asyncpg.Record, int] | Gone:
    """The locked invoice and what the link charges now, or why it takes nothing."""
    invoice = await locked(conn, invoice_id)
    request = None
    if request_id is not None:
        request = await conn.fetchrow(
            "select status, amount from payment_requests where id = $1 for update", request_id)
        if request["status"] != "active":
            return Gone(request["status"])
    if not is_open(invoice):
        return Gone(status_of(invoice))
    # Pay Now pays what is outstanding; a request its amount, never more than remains.
    left = remaining_of(invoice)
    return invoice, left if request is None else min(request["amount"], left)


async def _plan(books: Books, token: str, processor: Processor) -> SessionSpec | Redirect | Gone:
    async with books.transaction() as conn:
        invoice_id, request_id = await _link(conn, token)
        payable = await _still_payable(conn, invoice_id, request_id)
        if isinstance(payable, Gone):
            return payable
        invoice, amount = payable
        if processor.amount_refused(amount, invoice["currency"]):
            return Gone("unpayable")
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
            # An amount no longer outstanding: retire that session.
            await owe_expiry(conn, invoice_id, session_id=session["id"])
        made_before = await conn.fetchval(
            """select count(*) from checkout_sessions
               where invoice_id = $1 and payment_request_id is not distinct from $2""",
            invoice_id, request_id,
        )
        email = await conn.fetchval("select email from customers where id = $1",
                                    invoice["customer_id"])
        link = f"{books.public_url}/pay/{token}"
        return SessionSpec(
            invoice_id=invoice_id, invoice_number=invoice["number"],
            payment_request_id=request_id, amount=amount, currency=invoice["currency"],
            customer_email=email, success_url=f"{link}/done", cancel_url=link,
            idempotency_key=f"checkout:{invoice_id}:{request_id or 'pay-now'}:{amount}:{made_before}",
        )


async def _record(books: Books, spec: SessionSpec, made: SessionMade,
                  processor: Processor) -> Redirect | Gone:
    async with books.transaction() as conn:
        # Checked again: the link may have been paid, cancelled or voided meanwhile.
        payable = await _still_payable(conn, spec.invoice_id, spec.payment_request_id)
        await conn.execute(
            """insert into checkout_sessions (id, processor, invoice_id, payment_request_id,
                                              amount, currency, url, expires_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               on conflict (id) do nothing""",
            made.id, processor.name, spec.invoice_id, spec.payment_request_id, spec.amount,
            spec.currency, made.url,
            datetime.fromtimestamp(made.expires_at, UTC) if made.expires_at else None,
        )
        if isinstance(payable, Gone):
            await owe_expiry(conn, spec.invoice_id, session_id=made.id)
            return payable
        return Redirect(made.url)


async def session_finished(conn: asyncpg.Connection, session_id: str, status: str, *,
                           payment_id: str | None = None, settled: bool = False) -> None:
    """The processor says a session is complete or expired: it is no longer reused or
    expired. `settled`: its outcome is final (expired, or its payment captured or
    failed), so reconcile need not ask about it again."""
    await conn.execute(
        """update checkout_sessions
              set status = case when status = 'open' then $2 else status end,
                  payment_id = coalesce(payment_id, $3),
                  resolved_at = case when $4 then coalesce(resolved_at, now()) end,
                  updated_at = now()
           where id = $1""",
        session_id, status, payment_id, settled,
    )
