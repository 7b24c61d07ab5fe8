"""Reconcile: recompute invoices from their records, repair drift, recover missed payments.

The kept sums (`invoices.amount_paid`, `amount_credited`, `credit_balances`)
are recomputed from `payments` and `credit_entries`; any difference is
repaired and reported. Then every Checkout Session settle made for the
invoice and does not know to be finished is asked for at Stripe: a session
that completed and paid, whose webhook never came, is applied through the
very code its webhook would have run, so a late webhook changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from ledger import payments
from ledger.checkout import session_finished
from ledger.inbox import PermanentError, RetryLater
from ledger.invoices import changed, lock_invoice
from ledger.tx import AfterCommit, transaction


@dataclass(frozen=True, slots=True)
class SessionState:
    id: str
    status: str  # open, complete, expired
    payment_status: str  # paid, unpaid, no_payment_required
    payment_intent: str | None
    amount_total: int
    currency: str
    metadata: dict[str, str]


RetrieveSession = Callable[[str], Awaitable[SessionState]]


@dataclass
class Report:
    checked: int = 0
    sessions_checked: int = 0
    repaired: list[dict[str, Any]] = field(default_factory=list)
    recovered: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "sessions_checked": self.sessions_checked,
                "repaired": self.repaired, "recovered": self.recovered, "errors": self.errors}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(**{k: data[k] for k in ("checked", "sessions_checked", "repaired",
                                           "recovered", "errors") if k in data})


async def candidates(pool: asyncpg.Pool, after: str, limit: int) -> list[str]:
    """Open invoices, and any with a session not known to be finished, in id order."""
    rows = await pool.fetch(
        """select id from invoices i
           where id > $1 and (
               (sent_at is not null and voided_at is null
                and total > amount_paid + amount_credited)
               or exists (select 1 from checkout_sessions s
                          where s.invoice_id = i.id and s.status = 'open'))
           order by id limit $2""",
        after, limit,
    )
    return [r["id"] for r in rows]


async def repair(conn: asyncpg.Connection, invoice_id: str) -> list[dict[str, Any]]:
    """Make the kept sums agree with the records; what was changed."""
    invoice = await lock_invoice(conn, invoice_id)
    if invoice is None:
        return []
    paid = await conn.fetchval(
        """select coalesce(sum(applied - refund_from_paid), 0) from payments
           where invoice_id = $1 and status = 'succeeded'""", invoice_id)
    credited = await conn.fetchval(
        """select coalesce(-sum(amount), 0) from credit_entries
           where invoice_id = $1 and kind in ('applied', 'returned')""", invoice_id)
    repairs = []
    for name, should in (("amount_paid", paid), ("amount_credited", credited)):
        if invoice[name] != should:
            repairs.append({"invoice_id": invoice_id, "field": name, "was": invoice[name],
                            "now": int(should)})
    if repairs:
        await conn.execute(
            "update invoices set amount_paid = $2, amount_credited = $3 where id = $1",
            invoice_id, paid, credited)
    balance = await conn.fetchrow(
        """select b.balance, coalesce((select sum(amount) from credit_entries e
                                       where e.customer_id = b.customer_id
                                         and e.currency = b.currency), 0) as should
           from credit_balances b where b.customer_id = $1 and b.currency = $2 for update""",
        invoice["customer_id"], invoice["currency"])
    if balance is not None and balance["balance"] != balance["should"]:
        repairs.append({"customer_id": invoice["customer_id"], "currency": invoice["currency"],
                        "field": "credit_balance", "was": balance["balance"],
                        "now": int(balance["should"])})
        await conn.execute(
            "update credit_balances set balance = $3 where customer_id = $1 and currency = $2",
            invoice["customer_id"], invoice["currency"], balance["should"])
    if repairs:
        await changed(conn, invoice)
    return repairs


async def recover_session(conn: asyncpg.Connection, invoice_id: str, state: SessionState,
                          policy: Literal["credit", "refund"]) -> str | None:
    """Apply what a finished session says, as its webhook would; a note if money moved."""
    if state.status == "open":
        return None
    await session_finished(conn, state.id, state.status)
    if state.status != "complete" or state.payment_intent is None:
        return None
    facts = payments.PaymentFacts(state.payment_intent, invoice_id, state.amount_total,
                                  state.currency, state.metadata.get("payment_request_id"))
    if state.payment_status == "unpaid":
        await payments.processing(conn, facts)
        return None
    note = await payments.capture(conn, facts, policy)
    return None if note == "payment already applied" else note


async def reconcile_invoice(pool: asyncpg.Pool, invoice_id: str, retrieve: RetrieveSession,
                            policy: Literal["credit", "refund"], after_commit: AfterCommit,
                            report: Report) -> None:
    report.checked += 1
    async with transaction(pool, after_commit) as conn:
        report.repaired += await repair(conn, invoice_id)
    sessions = await pool.fetch(
        "select id from checkout_sessions where invoice_id = $1 and status = 'open' order by id",
        invoice_id)
    for session in sessions:
        report.sessions_checked += 1
        try:
            state = await retrieve(session["id"])  # outside any transaction: it is a network call
            async with transaction(pool, after_commit) as conn:
                note = await recover_session(conn, invoice_id, state, policy)
        except (PermanentError, RetryLater) as error:
            report.errors.append({"session_id": session["id"], "error": str(error)})
            continue
        if note:
            report.recovered.append({"invoice_id": invoice_id, "session_id": session["id"],
                                     "payment_id": state.payment_intent, "note": note})
