"""What an invoice row says: its status, what remains, whether it is open; and its lock.

Every function that changes money locks the invoice row first
(`select ... for update`), then any credit balance: one order everywhere, so
concurrent workers and API calls serialise on the invoice and never deadlock.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from core.errors import NotFound, PermanentError, RetryLater
from ledger import money
from ledger.context import Known


def today() -> date:
    return datetime.now(UTC).date()


def status_of(row: asyncpg.Record | dict[str, Any], on: date | None = None) -> money.InvoiceStatus:
    return money.invoice_status(
        voided=row["voided_at"] is not None, sent=row["sent_at"] is not None,
        total=row["total"], amount_paid=row["amount_paid"],
        amount_credited=row["amount_credited"], due_date=row["due_date"], today=on or today(),
        amount_credit_noted=row["amount_credit_noted"],
    )


def remaining_of(row: asyncpg.Record | dict[str, Any]) -> int:
    return money.remaining(row["total"], row["amount_paid"], row["amount_credited"],
                           row["amount_credit_noted"])


def is_open(row: asyncpg.Record | dict[str, Any]) -> bool:
    return status_of(row) in money.OPEN_STATUSES


async def lock_invoice(conn: asyncpg.Connection, invoice_id: str, *,
                       known: Known | None = None) -> asyncpg.Record | None:
    """The invoice row, locked; the one `known` holds (locked by the caller in this
    transaction) is taken instead of asking again, once."""
    ready = known.take_invoice(invoice_id) if known is not None else None
    if ready is not None:
        return ready
    return await conn.fetchrow("select * from invoices where id = $1 for update", invoice_id)


async def locked(conn: asyncpg.Connection, invoice_id: str) -> asyncpg.Record:
    row = await lock_invoice(conn, invoice_id)
    if row is None:
        raise NotFound("invoice", invoice_id)
    return row


async def invoice_for(conn: asyncpg.Connection, invoice_id: str, currency: str, *,
                      known: Known | None = None) -> asyncpg.Record:
    """The invoice a payment names, locked; retried while unknown (the application may
    create it a moment later); never applied in another currency."""
    invoice = await lock_invoice(conn, invoice_id, known=known)
    if invoice is None:
        raise RetryLater(f"unknown invoice {invoice_id}")
    if invoice["currency"] != currency:
        raise PermanentError(
            f"currency {currency} does not match invoice {invoice_id} currency {invoice['currency']}")
    return invoice


# The same status in SQL (for lists filtered by status in one query); keep the two in step
# (tests/test_merchant.py checks them against each other).
STATUS_SQL = """case when i.voided_at is not null then 'void'
     when i.sent_at is null then 'draft'
     when i.total - i.amount_paid - i.amount_credited - i.amount_credit_noted <= 0 then 'paid'
     when i.due_date is not null and (now() at time zone 'UTC')::date > i.due_date
          then 'overdue'
     when i.amount_paid + i.amount_credited > 0 then 'partially_paid'
     else 'sent' end"""
