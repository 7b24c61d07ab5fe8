"""Reconcile: recompute invoices from their records, repair drift, recover missed payments.

The kept sums (`invoices.amount_paid`, `amount_credited`, `credit_balances`)
are recomputed from `payments` and `credit_entries`; any difference is
repaired and reported. Then the processor is asked about every checkout
session settle made for the invoice whose outcome settle has not seen
settled, whatever settle thought of it (open, completed unpaid, expired by
settle) and whatever the invoice's status now, and about every payment still
processing: a payment the processor has and settle did not record is applied
through the very code its webhook would have run (so a late webhook changes
nothing), on a paid invoice as excess (§8).
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from core.errors import NotFound, PermanentError, RetryLater
from core.processor import PaymentState, Processor, SessionState
from core.tx import Books
from ledger import locks, payments
from ledger.checkout import session_finished
from ledger.context import Known
from ledger.facts import PaymentFacts
from ledger.invoices import changed
from reads.timeline import require_invoice
from reads.views import maybe_iso


@dataclass
class Report:
    checked: int = 0
    sessions_checked: int = 0
    payments_checked: int = 0
    repaired: list[dict[str, Any]] = field(default_factory=list)
    recovered: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"checked": self.checked, "sessions_checked": self.sessions_checked,
                "payments_checked": self.payments_checked, "repaired": self.repaired,
                "recovered": self.recovered, "errors": self.errors}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Report:
        return cls(**{k: data[k] for k in ("checked", "sessions_checked", "payments_checked",
                                           "repaired", "recovered", "errors") if k in data})


async def candidates(pool: asyncpg.Pool, after: str, limit: int) -> list[str]:
    """Open invoices, and any with a session or a payment whose outcome settle has not
    seen settled, in id order."""
    rows = await pool.fetch(
        """select id from invoices i
           where id > $1 and (
               (sent_at is not null and voided_at is null
                and total > amount_paid + amount_credited + amount_credit_noted)
               or exists (select 1 from checkout_sessions s
                          where s.invoice_id = i.id and s.resolved_at is null)
               or exists (select 1 from payments p
                          where p.invoice_id = i.id and p.status = 'processing'))
           order by id limit $2""",
        after, limit,
    )
    return [r["id"] for r in rows]


async def repair(conn: asyncpg.Connection, invoice_id: str, *,
                 known: Known) -> list[dict[str, Any]]:
    """Make the kept sums agree with the records; what was changed."""
    invoice = await locks.invoice(conn, invoice_id)
    if invoice is None:
        return []
    paid = await conn.fetchval(
        """select coalesce(sum(applied - refund_from_paid - reversal_from_paid), 0) from payments
           where invoice_id = $1 and status = 'succeeded'""", invoice_id)
    credited = await conn.fetchval(
        """select coalesce(-sum(amount), 0) from credit_entries
           where invoice_id = $1 and kind = 'applied'""", invoice_id)
    credit_noted = await conn.fetchval(
        "select coalesce(sum(pre_payment_amount), 0) from credit_notes where invoice_id = $1",
        invoice_id)
    repairs = []
    for name, should in (("amount_paid", paid), ("amount_credited", credited),
                         ("amount_credit_noted", credit_noted)):
        if invoice[name] != should:
            repairs.append({"invoice_id": invoice_id, "field": name, "was": invoice[name],
                            "now": int(should)})
    if repairs:
        await conn.execute(
            """update invoices set amount_paid = $2, amount_credited = $3,
                      amount_credit_noted = $4 where id = $1""",
            invoice_id, paid, credited, credit_noted)
    balance = await locks.credit_balance_and_entries(conn, invoice["customer_id"],
                                                     invoice["currency"])
    if balance is not None and balance["balance"] != balance["should"]:
        repairs.append({"customer_id": invoice["customer_id"], "currency": invoice["currency"],
                        "field": "credit_balance", "was": balance["balance"],
                        "now": int(balance["should"])})
        await conn.execute(
            "update credit_balances set balance = $3 where customer_id = $1 and currency = $2",
            invoice["customer_id"], invoice["currency"], balance["should"])
    if repairs:
        await changed(conn, invoice, known=known)
    return repairs


async def recover_session(conn: asyncpg.Connection, invoice_id: str, state: SessionState,
                          policy: Literal["credit", "refund"], source: str, *,
                          known: Known) -> str | None:
    """Apply what the processor says of a session, as its webhooks would; a note if
    money moved."""
    if state.status == "open":
        return None
    await session_finished(conn, state.id, state.status, payment_id=state.payment_id,
                           settled=state.status == "expired" or state.paid)
    if state.status != "complete" or state.payment_id is None:
        return None
    # How it was paid, as the processor says: the page says "Direct Debit" of a debit
    # first learned here, as it would had its webhook come.
    facts = PaymentFacts(state.payment_id, invoice_id, state.amount, state.currency, source,
                         state.metadata.get("payment_request_id"), method=state.method)
    if not state.paid:
        await payments.processing(conn, facts, known=known)
        return None
    note = await payments.capture(conn, facts, policy, known=known)
    return None if note == "payment already applied" else note


async def recover_payment(conn: asyncpg.Connection, invoice_id: str, state: PaymentState,
                          policy: Literal["credit", "refund"], source: str, *,
                          known: Known) -> str | None:
    """Apply what the processor says of a payment settle has as processing."""
    facts = PaymentFacts(state.id, invoice_id, state.amount, state.currency, source,
                         method=state.method)
    if state.status == "succeeded":
        note = await payments.capture(conn, facts, policy, known=known)
    elif state.status == "failed":
        note = await payments.failed(conn, facts, known=known)
    else:
        return None
    await conn.execute(
        """update checkout_sessions set resolved_at = now()
           where payment_id = $1 and resolved_at is null""", state.id)
    return None if note == "payment already applied" else note


async def check_session(books: Books, processor: Processor, session_id: str,
                        policy: Literal["credit", "refund"], *,
                        answer_by: float | None = None) -> tuple[SessionState, str | None]:
    """Ask the processor about one session (no transaction open; TimeoutError unless it
    answers by `answer_by`, a time of the event loop), then apply what it says; (its
    state, a note if money moved)."""
    async with asyncio.timeout_at(answer_by):
        state = await processor.retrieve_checkout(session_id)
    async with books.transaction() as conn:
        invoice_id = await conn.fetchval(
            "select invoice_id from checkout_sessions where id = $1", session_id)
        if invoice_id is None:
            return state, None
        return state, await recover_session(conn, invoice_id, state, policy, processor.name,
                                            known=Known(books))


def unregistered(name: str) -> str:
    return f"no processor {name!r} is configured"


async def reconcile_invoice(books: Books, invoice_id: str,
                            processors: Mapping[str, Processor],
                            policy: Literal["credit", "refund"], report: Report, *,
                            answer_by: float | None = None) -> None:
    """Reconcile one invoice into `report`, each session and payment asked of its own
    processor (`processors`, by name). Every question to a processor must be answered by
    `answer_by` (a time of the event loop), or TimeoutError: a caller cut short
    reconciles the invoice again from the start, which is safe (what was applied is not
    applied twice, and is no longer asked about; a question asked again is counted
    again)."""
    async with books.transaction() as conn:
        report.repaired += await repair(conn, invoice_id, known=Known(books))
    # Each question to the processor is asked outside any transaction.
    sessions = await books.pool.fetch(
        """select id, processor from checkout_sessions
           where invoice_id = $1 and resolved_at is null order by id""",
        invoice_id)
    for session in sessions:
        processor = processors.get(session["processor"])
        if processor is None:
            report.errors.append({"session_id": session["id"],
                                  "error": unregistered(session["processor"])})
            continue
        report.sessions_checked += 1
        try:
            state, note = await check_session(books, processor, session["id"], policy,
                                              answer_by=answer_by)
        except (PermanentError, RetryLater) as error:
            report.errors.append({"session_id": session["id"], "error": str(error)})
            continue
        if note:
            report.recovered.append({"invoice_id": invoice_id, "session_id": session["id"],
                                     "payment_id": state.payment_id, "note": note})
    # A processor payment's source is its processor's name.
    processing = await books.pool.fetch(
        """select id, source from payments
           where invoice_id = $1 and status = 'processing' and source <> 'manual'
           order by id""",
        invoice_id)
    for payment in processing:
        processor = processors.get(payment["source"])
        if processor is None:
            report.errors.append({"payment_id": payment["id"],
                                  "error": unregistered(payment["source"])})
            continue
        report.payments_checked += 1
        try:
            async with asyncio.timeout_at(answer_by):
                found = await processor.retrieve_payment(payment["id"])
            async with books.transaction() as conn:
                note = await recover_payment(conn, invoice_id, found, policy, processor.name,
                                             known=Known(books))
        except (PermanentError, RetryLater) as error:
            report.errors.append({"payment_id": payment["id"], "error": str(error)})
            continue
        if note:
            report.recovered.append({"invoice_id": invoice_id, "payment_id": payment["id"],
                                     "note": note})
    # Counted once it is through: an invoice cut short is counted when it is done again.
    report.checked += 1


# --- the operator job that runs a reconcile (its status survives Redis) -------------

async def create_job(books: Books, kind: str, params: dict[str, Any]) -> str:
    """Record an operator job, queued; its id. Its row is the promise: the sweeper
    queues a job left queued."""
    job_id = f"job_{secrets.token_hex(10)}"
    await books.pool.execute("insert into ops_jobs (id, kind, params) values ($1, $2, $3)",
                       job_id, kind, json.dumps(params))
    return job_id


async def start_reconcile(books: Books, invoice_id: str | None) -> str:
    """Record a reconcile of one invoice (or every open one); its job id, which the caller
    queues (`ops`). A job recorded and never queued is queued by the sweeper."""
    if invoice_id:
        await require_invoice(books.pool, invoice_id)
    return await create_job(books, "reconcile",
                            {"invoice_id": invoice_id} if invoice_id else {})


async def job_view(pool: asyncpg.Pool, job_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("select * from ops_jobs where id = $1", job_id)
    if row is None:
        raise NotFound("job", job_id)
    return {"id": row["id"], "kind": row["kind"], "status": row["status"],
            "result": row["result"], "reason": row["reason"],
            "created_at": maybe_iso(row["created_at"]),
            "finished_at": maybe_iso(row["finished_at"])}


async def claim_job(books: Books, job_id: str) -> tuple[str | None, str, Report] | None:
    """Mark a queued or unfinished job in progress: (its one invoice or None for every
    open one, where it got to, its report so far); None when it is finished."""
    row = await books.pool.fetchrow(
        """update ops_jobs set status = 'in_progress', started_at = coalesce(started_at, now())
           where id = $1 and status in ('queued', 'in_progress') returning params, progress""",
        job_id)
    if row is None:
        return None
    return (row["params"].get("invoice_id"), row["progress"].get("after", ""),
            Report.from_dict(row["progress"].get("report", {})))


async def save_progress(books: Books, job_id: str, after: str, report: Report) -> None:
    await books.pool.execute("update ops_jobs set progress = $2 where id = $1",
                       job_id, json.dumps({"after": after, "report": report.as_dict()}))


async def finish_job(books: Books, job_id: str, report: Report,
                     failure: str | None = None) -> None:
    await books.pool.execute(
        """update ops_jobs set status = $2, reason = $3, result = $4, finished_at = now()
           where id = $1""",
        job_id, "failed" if failure else "complete", failure, json.dumps(report.as_dict()))
