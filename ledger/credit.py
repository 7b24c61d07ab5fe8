"""Customer credit: an append-only ledger per currency and the balance it sums to."""

from __future__ import annotations

from typing import Literal

import asyncpg

CreditKind = Literal["overpayment", "applied", "taken_back", "adjustment", "credit_note",
                     "refund_fallback"]


async def locked_balance(conn: asyncpg.Connection, customer_id: str, currency: str) -> int:
    """The balance, its row locked until the transaction ends (created at 0 if new)."""
    await conn.execute(
        """insert into credit_balances (customer_id, currency) values ($1, $2)
           on conflict do nothing""",
        customer_id, currency,
    )
    balance: int = await conn.fetchval(
        "select balance from credit_balances where customer_id = $1 and currency = $2 for update",
        customer_id, currency,
    )
    return balance


async def change_credit(conn: asyncpg.Connection, customer_id: str, currency: str, amount: int,
                        kind: CreditKind, *, payment_id: str | None = None,
                        invoice_id: str | None = None, credit_note_id: str | None = None,
                        ref: str | None = None, reason: str | None = None,
                        request: str | None = None) -> int:
    """Add a signed amount to the balance with its ledger entry; the new balance.

    The CHECK on credit_balances refuses a balance below zero, so a caller's
    arithmetic error fails the transaction instead of minting money.
    """
    await locked_balance(conn, customer_id, currency)
    balance: int = await conn.fetchval(
        """update credit_balances set balance = balance + $3
           where customer_id = $1 and currency = $2 returning balance""",
        customer_id, currency, amount,
    )
    await conn.execute(
        """insert into credit_entries (customer_id, currency, amount, kind, payment_id,
                                       invoice_id, credit_note_id, ref, reason, request,
                                       balance_after)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        customer_id, currency, amount, kind, payment_id, invoice_id, credit_note_id, ref,
        reason, request, balance,
    )
    return balance


async def balances(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        """select currency, balance from credit_balances
           where customer_id = $1 and balance > 0 order by currency""",
        customer_id,
    )
    return {r["currency"]: r["balance"] for r in rows}
