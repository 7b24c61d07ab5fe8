"""Invoices: upsert while draft, send, void, apply credit, and the view the API shows.

Money-changing functions lock the invoice row first (see `ledger.status`) and
call `changed` after moving its money, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg

from core.errors import Conflict, Invalid, NotFound
from core.processor import Processor, refused_by_all, takers
from core.tx import Books
from delivery.outbound import invoice_changed, owe_event
from delivery.outbox import invoice_audience, owe_email
from ledger import locks, money
from ledger.context import Known, Urls
from ledger.credit import change_credit
from ledger.requests import end_active_requests, new_token
from ledger.status import STATUS_SQL, is_open, remaining_of, status_of
from reads.cursors import decode_cursor, encode_cursor
from reads.views import VIEW_SQL, view_of


@dataclass(frozen=True, slots=True)
class Line:
    description: str
    amount: int


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
    lines: tuple[Line, ...] | None = None
    # The customer may choose what to pay on the invoice page, at least this much.
    allow_partial: bool = False
    min_partial_amount: int = 0

    def lines_json(self) -> list[dict[str, Any]] | None:
        if self.lines is None:
            return None
        return [{"description": line.description, "amount": line.amount}
                for line in self.lines]


async def changed(conn: asyncpg.Connection, before: asyncpg.Record,
                  after: asyncpg.Record | None = None, *,
                  known: Known) -> asyncpg.Record:
    """Call after changing an invoice's money, in the same transaction.

    When the invoice has just become paid, by whatever route, its active
    payment request is superseded and its open checkout sessions are owed an
    expiry, in this same transaction; the count of times it became paid keys
    the "paid" notice.
    """
    if after is None:
        after = await conn.fetchrow(
            "update invoices set updated_at = now() where id = $1 returning *", before["id"])
    if remaining_of(before) > 0 and remaining_of(after) == 0 and after["sent_at"] is not None \
            and after["voided_at"] is None:
        after = await conn.fetchrow(
            """update invoices set times_paid = times_paid + 1, paid_at = now()
               where id = $1 returning *""",
            before["id"])
        await end_active_requests(conn, before["id"], "superseded", known=known)
        audience = await invoice_audience(conn, before["id"], known=known)
        await owe_email(conn, "invoice_paid", f"{before['id']}:{after['times_paid']}",
                        invoice_id=before["id"], to=audience["to"], audience=audience,
                        number=audience["number"],
                        total=after["total"], currency=after["currency"])
    # Any change of its money is told (delivery.outbound.invoice_event), not only of its status.
    await invoice_changed(conn, before, after, known=known)
    return after


# --- API operations (each its own transaction) -------------------------------------


async def upsert_invoice(books: Books, invoice_id: str, data: InvoiceInput,
                         processors: Sequence[Processor]) -> tuple[dict[str, Any], bool]:
    """`processors`: every registered one. A total is refused only when every configured
    processor that takes its currency could not move it at all (its step: a total below a
    least charge, or above a largest, is still an invoice, paid another way or in parts)."""
    refused = refused_by_all(takers(processors, data.currency),
                             lambda p: p.unit_refused(data.total, data.currency))
    if refused:
        raise Invalid("total_invalid", refused)
    if data.lines is not None and sum(line.amount for line in data.lines) != data.total:
        raise Invalid("lines_mismatch", "the lines do not add up to the total")
    if data.allow_partial and data.kind == "quote_deposit":
        raise Invalid("partial_not_allowed", "a quote deposit is paid in full")
    async with books.transaction() as conn:
        if not await conn.fetchval("select 1 from customers where id = $1", data.customer_id):
            raise Invalid("customer_not_found", f"no customer {data.customer_id!r}")
        values = (invoice_id, data.customer_id, data.number, data.currency, data.total,
                  data.due_date, data.kind, list(data.notify_emails), data.auto_apply_credit,
                  data.lines_json(), data.allow_partial, data.min_partial_amount)
        # One statement decides between two concurrent creations: no check-then-insert race.
        created = await conn.fetchval(
            """insert into invoices (id, customer_id, number, currency, total, due_date,
                                     kind, notify_emails, auto_apply_credit, lines,
                                     allow_partial, min_partial_amount, pay_token)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
               on conflict (id) do nothing returning true""",
            *values, new_token(),
        )
        if not created:
            existing = await locks.invoice_or_not_found(conn, invoice_id)
            if existing["sent_at"] is None and existing["voided_at"] is None:
                await _update_draft(conn, existing, data, values)
            else:
                await _update_terms(conn, existing, data)
        return await invoice_view(conn, invoice_id, books), bool(created)


async def _update_terms(conn: asyncpg.Connection, existing: asyncpg.Record,
                        data: InvoiceInput) -> None:
    """A sent invoice no longer changes, but for the customer's freedom to choose what to
    pay (`allow_partial`, `min_partial_amount`) while it is open. The same body again
    changes nothing (an idempotent PUT)."""
    fixed = (existing["customer_id"], existing["number"], existing["currency"],
             existing["total"], existing["due_date"], existing["kind"],
             list(existing["notify_emails"]), existing["auto_apply_credit"], existing["lines"])
    asked = (data.customer_id, data.number, data.currency, data.total, data.due_date,
             data.kind, list(data.notify_emails), data.auto_apply_credit, data.lines_json())
    partial = (data.allow_partial, data.min_partial_amount)
    if fixed != asked:
        raise Conflict("invoice_not_draft", "the invoice was sent; only allow_partial and "
                       "min_partial_amount may change while it is open")
    if partial == (existing["allow_partial"], existing["min_partial_amount"]):
        return
    if not is_open(existing):
        raise Conflict("invoice_not_draft", f"the invoice is {status_of(existing)}: "
                       "allow_partial and min_partial_amount change only while it is open")
    await conn.execute(
        """update invoices set allow_partial = $2, min_partial_amount = $3, updated_at = now()
           where id = $1""",
        existing["id"], *partial)


async def _update_draft(conn: asyncpg.Connection, existing: asyncpg.Record, data: InvoiceInput,
                        values: tuple[Any, ...]) -> None:
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
                  lines = $10, allow_partial = $11, min_partial_amount = $12, updated_at = now()
           where id = $1""",
        *values,
    )


async def send_invoice(books: Books, invoice_id: str, *, mail: bool = True) -> dict[str, Any]:
    """The invoice is now open (once: a second send changes nothing); with `mail`, the
    customer is owed the `invoice_sent` mail in the same transaction, whose PDF is made
    when it is sent."""
    async with books.transaction() as conn:
        row = await locks.invoice_or_not_found(conn, invoice_id)
        if row["voided_at"] is not None:
            raise Conflict("invoice_void", "a void invoice cannot be sent")
        if row["sent_at"] is None:
            row = await conn.fetchrow(
                "update invoices set sent_at = now() where id = $1 returning *", invoice_id)
            known = Known(books)  # the endpoints, read once for the messages it owes
            await owe_event(conn, "invoice.sent", invoice_id=invoice_id, known=known)
            if row["auto_apply_credit"]:
                await _apply_credit(conn, row, None, known)
            if mail:
                await _owe_sent_mail(conn, invoice_id)
        return await invoice_view(conn, invoice_id, books)


async def _owe_sent_mail(conn: asyncpg.Connection, invoice_id: str) -> None:
    """`invoice_sent`, to the customer alone (notify_emails are the merchant's own), after
    any credit was applied, so it says what remains."""
    audience = await invoice_audience(conn, invoice_id)
    row = await conn.fetchrow("select * from invoices where id = $1", invoice_id)
    await owe_email(conn, "invoice_sent", invoice_id, invoice_id=invoice_id,
                    to=audience["to"][:1], audience=audience, number=audience["number"],
                    total=row["total"], currency=row["currency"],
                    amount=remaining_of(row), credited=row["amount_credited"],
                    customer_name=audience["customer_name"])


async def void_invoice(books: Books, invoice_id: str) -> dict[str, Any]:
    async with books.transaction() as conn:
        row = await locks.invoice_or_not_found(conn, invoice_id)
        if row["voided_at"] is None:
            held = await conn.fetch(
                """select status, applied, refund_from_paid, reversal_from_paid, amount, refunded,
                          reversed
                   from payments
                   where invoice_id = $1 and status in ('processing', 'succeeded')""",
                invoice_id)
            # Money still applied, net of refunds, or money on its way: a payment refunded
            # in full no longer stands in the way.
            if any(p["status"] == "processing" or money.still_applied(
                    applied=p["applied"], refund_from_paid=p["refund_from_paid"],
                    amount=p["amount"], refunded=p["refunded"],
                    reversal_from_paid=p["reversal_from_paid"], reversed=p["reversed"])
                    for p in held):
                raise Conflict("invoice_has_payments",
                               "a payment is still applied to the invoice or is processing")
            returned_by_notes = await conn.fetchval(
                "select coalesce(sum(from_credit), 0) from credit_notes where invoice_id = $1",
                invoice_id)
            # Credit spent on an invoice that no longer stands goes back to the customer,
            # but for what its credit notes already gave back of it.
            back = money.credit_back_on_void(row["amount_credited"], returned_by_notes)
            known = Known(books)  # the endpoints, read once for the messages it owes
            if back:
                await change_credit(conn, row["customer_id"], row["currency"], back, "applied",
                                    invoice_id=invoice_id, known=known)
            # What stays credited is what the credit notes returned: the applied entries
            # still sum to it (ledger.reconcile.repair recomputes it so).
            await conn.execute(
                """update invoices set voided_at = now(), amount_credited = amount_credited - $2,
                          updated_at = now()
                   where id = $1""",
                invoice_id, back,
            )
            await end_active_requests(conn, invoice_id, "cancelled", known=known)
            await owe_event(conn, "invoice.voided", invoice_id=invoice_id, known=known)
        return await invoice_view(conn, invoice_id, books)


async def apply_credit(books: Books, invoice_id: str, amount: int | None) -> dict[str, Any]:
    async with books.transaction() as conn:
        row = await locks.invoice_or_not_found(conn, invoice_id)
        if not is_open(row):
            raise Invalid("invoice_not_open", f"the invoice is {status_of(row)}")
        if await _apply_credit(conn, row, amount, Known(books)) == 0:
            raise Invalid("no_credit", "the customer has no credit in this currency")
        return await invoice_view(conn, invoice_id, books)


async def _apply_credit(conn: asyncpg.Connection, row: asyncpg.Record, amount: int | None,
                        known: Known) -> int:
    """Apply min(amount, balance, remaining) of credit to a locked invoice; what was applied."""
    balance = await locks.credit_balance(conn, row["customer_id"], row["currency"])
    applied = money.credit_to_apply(amount, balance, remaining_of(row))
    if applied:
        await change_credit(conn, row["customer_id"], row["currency"], -applied, "applied",
                            invoice_id=row["id"], known=known)
        await conn.execute(
            "update invoices set amount_credited = amount_credited + $2 where id = $1",
            row["id"], applied,
        )
        await changed(conn, row, known=known)
    return applied


# --- the view ------------------------------------------------------------------------


async def invoice_view(conn: asyncpg.Connection, invoice_id: str, urls: Urls) -> dict[str, Any]:
    """The invoice as the API shows it, read on the caller's connection (in its
    transaction: what a change answers is what it made)."""
    row = await conn.fetchrow(VIEW_SQL + " where i.id = $1", invoice_id)
    if row is None:
        raise NotFound("invoice", invoice_id)
    return view_of(row, urls)


async def get_invoice(pool: asyncpg.Pool, invoice_id: str, *, urls: Urls) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return await invoice_view(conn, invoice_id, urls)


async def list_invoices(pool: asyncpg.Pool, *, status: str | None, customer_id: str | None,
                        cursor: str | None, limit: int, urls: Urls) -> dict[str, Any]:
    """Invoices newest first, by status and customer, a page in one query."""
    before = decode_cursor(cursor) if cursor else None
    rows = await pool.fetch(
        VIEW_SQL + f"""
        where ($1::text is null or ({STATUS_SQL}) = $1)
          and ($2::text is null or i.customer_id = $2)
          and ($3::timestamptz is null or (i.created_at, i.id) < ($3, $4))
        order by i.created_at desc, i.id desc limit $5""",
        status, customer_id, before[0] if before else None, before[1] if before else "",
        limit + 1)
    page = rows[:limit]
    return {"invoices": [view_of(r, urls) for r in page],
            "next": encode_cursor(page[-1]["created_at"], page[-1]["id"])
            if len(rows) > limit else None}

