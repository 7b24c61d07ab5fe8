"""Customer credit: an append-only ledger per currency and the balance it sums to."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

from core.errors import Conflict, NotFound
from core.tx import Books
from delivery.outbound import owe_event
from ledger import locks
from ledger.context import Known
from ledger.repeats import check_same_request
from reads.cursors import decode_row_cursor, encode_cursor

CreditKind = Literal["overpayment", "applied", "taken_back", "adjustment", "credit_note",
                     "refund_fallback"]


async def change_credit(conn: asyncpg.Connection, customer_id: str, currency: str, amount: int,
                        kind: CreditKind, *, payment_id: str | None = None,
                        invoice_id: str | None = None, credit_note_id: str | None = None,
                        ref: str | None = None, reason: str | None = None,
                        request: str | None = None, known: Known) -> int:
    """Add a signed amount to the balance with its ledger entry; the new balance.

    The CHECK on credit_balances refuses a balance below zero, so a caller's
    arithmetic error fails the transaction instead of minting money.
    """
    await locks.credit_balance(conn, customer_id, currency)
    balance = await _move(conn, customer_id, currency, amount)
    await conn.execute(
        """insert into credit_entries (customer_id, currency, amount, kind, payment_id,
                                       invoice_id, credit_note_id, ref, reason, request,
                                       balance_after)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        customer_id, currency, amount, kind, payment_id, invoice_id, credit_note_id, ref,
        reason, request, balance,
    )
    await owe_event(conn, "customer.credit_changed", customer_id=customer_id,
                    invoice_id=invoice_id, known=known)
    return balance


async def _move(conn: asyncpg.Connection, customer_id: str, currency: str, amount: int) -> int:
    """Add a signed amount to a (locked) balance; the new balance."""
    balance: int = await conn.fetchval(
        """update credit_balances set balance = balance + $3
           where customer_id = $1 and currency = $2 returning balance""",
        customer_id, currency, amount,
    )
    return balance


# --- what the merchant does with credit, and the ledger it can read -----------------------


def entry_view(row: asyncpg.Record) -> dict[str, Any]:
    """A credit entry as the API shows it (CONTRACT §5): an adjustment by the caller's id,
    any other entry by settle's."""
    return {"id": row["ref"] or f"ce_{row['id']}", "amount": row["amount"],
            "currency": row["currency"], "kind": row["kind"], "invoice_id": row["invoice_id"],
            "payment_id": row["payment_id"], "reason": row["reason"],
            "created_at": row["created_at"].isoformat(), "balance_after": row["balance_after"]}


@dataclass(frozen=True, slots=True)
class Adjustment:
    id: str
    amount: int  # > 0 goodwill credit, < 0 a deduction
    currency: str
    reason: str
    request: dict[str, Any]


async def adjust(books: Books, customer_id: str, data: Adjustment) -> tuple[dict[str, Any], bool]:
    """Give or take credit by hand; (the entry, created?). Never below zero."""
    async with books.transaction() as conn:
        if not await conn.fetchval("select 1 from customers where id = $1", customer_id):
            raise NotFound("customer", customer_id)
        balance = await locks.credit_balance(conn, customer_id, data.currency)
        # The id is claimed first, in one statement (as `payments.record_manual` does): of
        # calls racing with one id, one passes; the others, once it commits, answer its
        # entry (the same body) or 409. The entry holds the balance before it until the
        # balance moves below; a refusal rolls the claim back.
        entry_id = await conn.fetchval(
            """insert into credit_entries (customer_id, currency, amount, kind, ref, reason,
                                           request, balance_after)
               values ($1, $2, $3, 'adjustment', $4, $5, $6, $7)
               on conflict (ref) do nothing returning id""",
            customer_id, data.currency, data.amount, data.id, data.reason,
            json.dumps(data.request), balance)
        if entry_id is None:
            existing = await conn.fetchrow("select * from credit_entries where ref = $1",
                                           data.id)
            check_same_request(existing, "customer_id", customer_id, data.request, "adjustment",
                               data.id)
            return entry_view(existing), False
        if balance + data.amount < 0:
            raise Conflict("insufficient_credit",
                           f"the customer holds {balance} in {data.currency}")
        after = await _move(conn, customer_id, data.currency, data.amount)
        row = await conn.fetchrow(
            "update credit_entries set balance_after = $2 where id = $1 returning *",
            entry_id, after)
        await owe_event(conn, "customer.credit_changed", customer_id=customer_id,
                        invoice_id=None, known=Known(books))
        return entry_view(row), True


async def list_entries(pool: asyncpg.Pool, customer_id: str, *, currency: str | None,
                       cursor: str | None, limit: int) -> dict[str, Any]:
    """A customer's credit entries, newest first, each with the balance after it."""
    if not await pool.fetchval("select 1 from customers where id = $1", customer_id):
        raise NotFound("customer", customer_id)
    before = decode_row_cursor(cursor) if cursor else None
    rows = await pool.fetch(
        """select * from credit_entries
           where customer_id = $1 and ($2::text is null or currency = $2)
             and ($3::bigint is null or id < $3)
           order by id desc limit $4""",
        customer_id, currency, before[1] if before else None, limit + 1)
    page = rows[:limit]
    return {"entries": [entry_view(r) for r in page],
            "next": encode_cursor(page[-1]["created_at"], page[-1]["id"])
            if len(rows) > limit else None}
