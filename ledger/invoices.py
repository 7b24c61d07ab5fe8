"""Invoices: upsert while draft, send, void, apply credit, and the view the API shows.

Money-changing functions lock the invoice row first (see `ledger.status`) and
call `changed` after moving its money, in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from core.errors import Conflict, Invalid, NotFound
from core.processor import Processor
from core.tx import Books
from ledger import money
from ledger.credit import change_credit, locked_balance
from ledger.outbox import invoice_audience, owe_email
from ledger.requests import end_active_requests, new_token, pay_url, request_view
from ledger.status import is_open, locked, remaining_of, status_of


@dataclass(frozen=True, slots=True)
class InvoiceInput:
    customer_id: str
    number: str
    currency: str
    total: int
    due_date: date | None = None
    kind: str = "invoice"
    notify_emails: tuple[str, ...] = ()
    auto_apply_credit: bool = True


async def changed(conn: asyncpg.Connection, before: asyncpg.Record,
                  after: asyncpg.Record | None = None) -> asyncpg.Record:
    """Call after changing an invoice's money, in the same transaction.

    When the invoice has just become paid, by whatever route, its active
    payment request is superseded and its open Checkout Sessions are owed an
    expiry, in this same transaction; the count of times it became paid keys
    the "paid" notice.
    """
    if after is None:
        after = await conn.fetchrow(
            "update invoices set updated_at = now() where id = $1 returning *", before["id"])
    if remaining_of(before) > 0 and remaining_of(after) == 0 and after["sent_at"] is not None \
            and after["voided_at"] is None:
        after = await conn.fetchrow(
            "update invoices set times_paid = times_paid + 1 where id = $1 returning *",
            before["id"])
        await end_active_requests(conn, before["id"], "superseded")
        audience = await invoice_audience(conn, before["id"])
        await owe_email(conn, "invoice_paid", f"{before['id']}:{after['times_paid']}",
                        invoice_id=before["id"], to=audience["to"], number=audience["number"],
                        total=after["total"], currency=after["currency"])
    return after


# --- API operations (each its own transaction) -------------------------------------


async def upsert_invoice(books: Books, invoice_id: str, data: InvoiceInput,
                         processor: Processor) -> tuple[dict[str, Any], bool]:
    refused = processor.amount_refused(data.total, data.currency) if processor.configured \
        else None
    if refused:
        raise Invalid("total_invalid", refused)
    async with books.transaction() as conn:
        if not await conn.fetchval("select 1 from customers where id = $1", data.customer_id):
            raise Invalid("customer_not_found", f"no customer {data.customer_id!r}")
        values = (invoice_id, data.customer_id, data.number, data.currency, data.total,
                  data.due_date, data.kind, list(data.notify_emails), data.auto_apply_credit)
        # One statement decides between two concurrent creations: no check-then-insert race.
        created = await conn.fetchval(
            """insert into invoices (id, customer_id, number, currency, total, due_date,
                                     kind, notify_emails, auto_apply_credit, pay_token)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
               on conflict (id) do nothing returning true""",
            *values, new_token(),
        )
        if not created:
            await _update_draft(conn, await locked(conn, invoice_id), data, values)
        return await invoice_view(conn, invoice_id, books.public_url), bool(created)


async def _update_draft(conn: asyncpg.Connection, existing: asyncpg.Record, data: InvoiceInput,
                        values: tuple[Any, ...]) -> None:
    if existing["sent_at"] is not None or existing["voided_at"] is not None:
        raise Conflict("invoice_not_draft", "the invoice was sent; it can no longer change")
    if data.total < existing["amount_paid"] + existing["amount_credited"]:
        raise Conflict("invoice_has_payments",
                       "the total is below what was already paid on the invoice")
    if (data.customer_id, data.currency) != (existing["customer_id"], existing["currency"]) \
            and await conn.fetchval(
                """select exists (select 1 from payments where invoice_id = $1)
                       or exists (select 1 from credit_entries where invoice_id = $1)""",
                existing["id"]):
        # Its payments and credit belong to that customer, in that currency.
        raise Conflict("invoice_has_payments",
                       "money is attached to the invoice: its customer and currency stay")
    await conn.execute(
        """update invoices set customer_id = $2, number = $3, currency = $4, total = $5,
                  due_date = $6, kind = $7, notify_emails = $8, auto_apply_credit = $9,
                  updated_at = now()
           where id = $1""",
        *values,
    )


async def send_invoice(books: Books, invoice_id: str) -> dict[str, Any]:
    async with books.transaction() as conn:
        row = await locked(conn, invoice_id)
        if row["voided_at"] is not None:
            raise Conflict("invoice_void", "a void invoice cannot be sent")
        if row["sent_at"] is None:
            row = await conn.fetchrow(
                "update invoices set sent_at = now() where id = $1 returning *", invoice_id)
            if row["auto_apply_credit"]:
                await _apply_credit(conn, row, None)
        return await invoice_view(conn, invoice_id, books.public_url)


async def void_invoice(books: Books, invoice_id: str) -> dict[str, Any]:
    async with books.transaction() as conn:
        row = await locked(conn, invoice_id)
        if row["voided_at"] is None:
            if await conn.fetchval(
                """select exists (select 1 from payments where invoice_id = $1
                   and ((status = 'succeeded' and applied > 0) or status = 'processing'))""",
                invoice_id,
            ):
                raise Conflict("invoice_has_payments",
                               "a payment was applied to the invoice or is processing")
            if row["amount_credited"] > 0:
                # Credit spent on an invoice that no longer stands goes back to the customer.
                await change_credit(conn, row["customer_id"], row["currency"],
                                    row["amount_credited"], "applied", invoice_id=invoice_id)
            await conn.execute(
                """update invoices set voided_at = now(), amount_credited = 0, updated_at = now()
                   where id = $1""",
                invoice_id,
            )
            await end_active_requests(conn, invoice_id, "cancelled")
        return await invoice_view(conn, invoice_id, books.public_url)


async def apply_credit(books: Books, invoice_id: str, amount: int | None) -> dict[str, Any]:
    async with books.transaction() as conn:
        row = await locked(conn, invoice_id)
        if not is_open(row):
            raise Invalid("invoice_not_open", f"the invoice is {status_of(row)}")
        if await _apply_credit(conn, row, amount) == 0:
            raise Invalid("no_credit", "the customer has no credit in this currency")
        return await invoice_view(conn, invoice_id, books.public_url)


async def _apply_credit(conn: asyncpg.Connection, row: asyncpg.Record, amount: int | None) -> int:
    """Apply min(amount, balance, remaining) of credit to a locked invoice; what was applied."""
    balance = await locked_balance(conn, row["customer_id"], row["currency"])
    applied = money.credit_to_apply(amount, balance, remaining_of(row))
    if applied:
        await change_credit(conn, row["customer_id"], row["currency"], -applied, "applied",
                            invoice_id=row["id"])
        await conn.execute(
            "update invoices set amount_credited = amount_credited + $2 where id = $1",
            row["id"], applied,
        )
        await changed(conn, row)
    return applied


# --- the view ------------------------------------------------------------------------


async def invoice_view(conn: asyncpg.Connection | asyncpg.Pool, invoice_id: str,
                       public_url: str) -> dict[str, Any]:
    row = await conn.fetchrow("select * from invoices where id = $1", invoice_id)
    if row is None:
        raise NotFound("invoice", invoice_id)
    payments = await conn.fetch(
        "select * from payments where invoice_id = $1 order by created_at, id", invoice_id)
    requests = await conn.fetch(
        "select * from payment_requests where invoice_id = $1 order by created_at, id", invoice_id)
    return {
        "id": row["id"],
        "number": row["number"],
        "customer_id": row["customer_id"],
        "currency": row["currency"],
        "total": row["total"],
        "amount_paid": row["amount_paid"],
        "amount_credited": row["amount_credited"],
        "amount_remaining": remaining_of(row),
        "status": status_of(row),
        "kind": row["kind"],
        "due_date": row["due_date"].isoformat() if row["due_date"] else None,
        "notify_emails": list(row["notify_emails"]),
        "auto_apply_credit": row["auto_apply_credit"],
        "pay_url": pay_url(public_url, row["pay_token"]) if is_open(row) else None,
        "payment_requests": [request_view(r, public_url) for r in requests],
        "payments": [payment_view(p) for p in payments],
    }


async def get_invoice(books: Books, invoice_id: str) -> dict[str, Any]:
    return await invoice_view(books.pool, invoice_id, books.public_url)


def payment_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A payment as the API shows it (CONTRACT §5)."""
    return {
        "id": row["id"], "source": row["source"], "method": row["method"],
        "amount": row["amount"], "applied": row["applied"], "credited": row["credited"],
        "refunded": row["refunded"], "status": row["status"],
        "payment_request_id": row["payment_request_id"],
        "created_at": row["created_at"].isoformat(),
    }
