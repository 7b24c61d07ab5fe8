"""Payments applied to invoices: captures, processing, failures, and what a processor says.

One row per payment id (the processor's, or the caller's for a manual one),
so a finished checkout and the processor's own report of its payment (Stripe
tells both) count once, and a refund that arrives before its capture is kept on
the row and taken back when the capture lands. Callers run these inside one
transaction (the event's, or the API call's).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import asyncpg

from core.errors import Invalid, PermanentError
from core.tx import Books
from ledger import locks, money, refunds, reversals
from ledger.checkout import session_finished
from ledger.context import Known
from ledger.credit import change_credit
from ledger.facts import (
    Captured,
    CheckoutFinished,
    Fact,
    Ignored,
    PaymentFacts,
    PaymentFailed,
    Processing,
    RefundChanged,
    Refunded,
    Reversed,
)
from delivery.outbound import owe_event
from delivery.outbox import invoice_audience, owe_email
from ledger.inbox import Outcome, Policy
from ledger.invoices import changed
from ledger.repeats import check_same_request
from ledger.requests import request_paid
from ledger.status import is_open, remaining_of, status_of
from reads.views import payment_view


def _check_same_invoice(payment: asyncpg.Record | None, facts: PaymentFacts) -> None:
    if payment is not None and payment["invoice_id"] != facts.invoice_id:
        raise PermanentError(
            f"payment {facts.payment_id} belongs to invoice {payment['invoice_id']}, "
            f"not {facts.invoice_id}")


async def capture(conn: asyncpg.Connection, facts: PaymentFacts,
                  policy: Literal["credit", "refund"], *,
                  request: str | None = None, known: Known) -> str:
    """Apply received money once; what happened, for the event's record.

    A manual payment's excess is always credited (there is nothing to refund
    through); a processor payment's follows the overpayment policy, its refund
    counted only once the processor confirms it (`ledger.refunds`).
    """
    invoice = await locks.invoice_for_payment(conn, facts.invoice_id, facts.currency, known=known)
    # Money on an invoice that is not open (draft, void, paid) is all excess.
    left = remaining_of(invoice) if is_open(invoice) else 0
    split = money.split_capture(facts.amount, left)
    refunding = policy == "refund" and facts.source != "manual"
    credited = 0 if refunding else split.excess
    excess_pending = split.excess - credited
    # One statement records the payment, or completes the one already known (processing,
    # or kept for a refund reported first), and locks it; it changes nothing when the
    # payment was applied before or belongs to another invoice (the invoice row, locked
    # above, serialises every capture of this invoice).
    payment = await conn.fetchrow(
        """insert into payments (id, invoice_id, payment_request_id, currency, status, amount,
                                 applied, credited, excess_pending, processor, source, method,
                                 reference, request)
           values ($1, $2, $3, $4, 'succeeded', $5, $6, $7, $8, $9, $10, $11, $12, $13)
           on conflict (id) do update set
               status = 'succeeded', amount = excluded.amount, applied = excluded.applied,
               credited = excluded.credited, excess_pending = excluded.excess_pending,
               payment_request_id = coalesce(payments.payment_request_id,
                                             excluded.payment_request_id),
               -- How it was paid, as the processing row said when this capture does not.
               method = coalesce(excluded.method, payments.method),
               updated_at = now()
           where payments.status <> 'succeeded' and payments.invoice_id = excluded.invoice_id
           returning *, xmax = 0 as first_seen""",
        facts.payment_id, facts.invoice_id, facts.payment_request_id, facts.currency,
        facts.amount, split.applied, credited, excess_pending, facts.source, facts.source,
        facts.method,
        facts.reference, request,
    )
    if payment is None:
        _check_same_invoice(await locks.payment(conn, facts.payment_id), facts)
        await _learn_method(conn, facts)
        return "payment already applied"
    updated = await conn.fetchrow(
        """update invoices set amount_paid = amount_paid + $2, updated_at = now()
           where id = $1 returning *""",
        invoice["id"], split.applied)
    owes_receipt = split.applied > 0 and remaining_of(updated) > 0
    audience = (await invoice_audience(conn, invoice["id"], known=known)
                if credited or owes_receipt else {})
    if credited:
        balance = await change_credit(conn, invoice["customer_id"], facts.currency, credited,
                                      "overpayment", payment_id=facts.payment_id,
                                      invoice_id=invoice["id"], known=known)
        await owe_email(conn, "credit_issued", facts.payment_id, invoice_id=invoice["id"],
                        to=audience["to"][:1], audience=audience, number=audience["number"],
                        credited=credited, balance=balance, currency=facts.currency)
    if excess_pending:
        await refunds.ask(conn, locks.Locked(updated, payment),
                          refund_id=f"refund-excess:{facts.payment_id}", amount=excess_pending,
                          purpose="excess", reason="overpayment", known=known)
    if facts.payment_request_id:
        await request_paid(conn, facts.invoice_id, facts.payment_request_id, known=known)
    after = await changed(conn, invoice, updated, known=known)
    if owes_receipt:
        await owe_email(conn, "payment_received", facts.payment_id, invoice_id=invoice["id"],
                        to=audience["to"], audience=audience, number=audience["number"],
                        amount=split.applied, remaining=remaining_of(after),
                        currency=facts.currency)
    if not payment["first_seen"]:
        # Refunds reported before this capture arrived are taken back now. (A payment
        # seen first here has none: a refund is only ever recorded against its payment.)
        await refunds.settle_payment(conn, invoice["id"], facts.payment_id, known=known)
    await owe_event(conn, "payment.succeeded", invoice_id=invoice["id"],
                    object_id=facts.payment_id, known=known)
    return f"captured {facts.amount}: applied {split.applied}, excess {split.excess}"


async def _learn_method(conn: asyncpg.Connection, facts: PaymentFacts) -> None:
    """A later event of a payment may say how it was paid when the first did not (Stripe's
    PaymentIntent names the card a Checkout Session offering several ways did not)."""
    if facts.method is not None:
        await conn.execute("update payments set method = $2 where id = $1 and method is null",
                           facts.payment_id, facts.method)


async def processing(conn: asyncpg.Connection, facts: PaymentFacts, *,
                     known: Known) -> str:
    """An asynchronous payment (bank transfer, debit) started: recorded, nothing applied."""
    await locks.invoice_for_payment(conn, facts.invoice_id, facts.currency, known=known)
    payment = await locks.payment(conn, facts.payment_id)
    _check_same_invoice(payment, facts)
    if payment is not None:
        return f"payment already {payment['status']}"
    await conn.execute(
        """insert into payments (id, invoice_id, payment_request_id, currency, status, amount,
                                 processor, source, method)
           values ($1, $2, $3, $4, 'processing', $5, $6, $6, $7)""",
        facts.payment_id, facts.invoice_id, facts.payment_request_id, facts.currency, facts.amount,
        facts.source, facts.method,
    )
    await owe_event(conn, "payment.processing", invoice_id=facts.invoice_id,
                    object_id=facts.payment_id, known=known)
    return f"payment processing: {facts.amount}"


async def failed(conn: asyncpg.Connection, facts: PaymentFacts, *,
                 known: Known) -> str:
    invoice = await locks.invoice_for_payment(conn, facts.invoice_id, facts.currency, known=known)
    payment = await locks.payment(conn, facts.payment_id)
    _check_same_invoice(payment, facts)
    if payment is not None and payment["status"] == "succeeded":
        return "payment already succeeded"  # money received stays received
    await conn.execute(
        """insert into payments (id, invoice_id, payment_request_id, currency, status, amount,
                                 processor, source, method)
           values ($1, $2, $3, $4, 'failed', $5, $6, $6, $7)
           on conflict (id) do update set status = 'failed',
               method = coalesce(excluded.method, payments.method), updated_at = now()""",
        facts.payment_id, facts.invoice_id, facts.payment_request_id, facts.currency, facts.amount,
        facts.source, facts.method,
    )
    if payment is not None and payment["status"] == "processing":
        # Money the customer was told is on its way will not come (§7): they are told. A
        # card declined at Checkout was never on its way, and the customer saw it there.
        audience = await invoice_audience(conn, invoice["id"], known=known)
        await owe_email(conn, "payment_failed", facts.payment_id, invoice_id=invoice["id"],
                        to=audience["to"][:1], audience=audience, number=audience["number"],
                        amount=payment["amount"], remaining=remaining_of(invoice),
                        method=payment["method"] or facts.method, currency=facts.currency)
    await owe_event(conn, "payment.failed", invoice_id=facts.invoice_id,
                    object_id=facts.payment_id, known=known)
    return "payment failed"


async def apply_facts(conn: asyncpg.Connection, facts: Sequence[Fact], policy: Policy, *,
                      known: Known) -> Outcome:
    """Apply what a processor's event says, in the event's transaction; `known`: what the
    event's claim read (`Event.known`)."""
    notes: list[str] = []
    ignored: list[str] = []
    for fact in facts:
        match fact:
            case Captured(payment):
                notes.append(await capture(conn, payment, policy.overpayment, known=known))
            case Processing(payment):
                notes.append(await processing(conn, payment, known=known))
            case PaymentFailed(payment):
                notes.append(await failed(conn, payment, known=known))
            case CheckoutFinished(session_id, status, payment_id, settled):
                await session_finished(conn, session_id, status, payment_id=payment_id,
                                       settled=settled)
            case Refunded(payment_id, invoice_id, cumulative, currency, amount, listed):
                notes.append(await refunds.reported(conn, payment_id, invoice_id, cumulative,
                                                    currency, amount, listed,
                                                    source=fact.source, known=known))
            case RefundChanged(payment_id, invoice_id, currency, refund):
                notes.append(await refunds.refund_changed(conn, payment_id, invoice_id, currency,
                                                          refund, source=fact.source,
                                                          known=known))
            case Reversed():
                notes.append(await reversals.reported(conn, fact, known=known))
            case Ignored(reason):
                ignored.append(reason)
    if notes or not ignored:
        return Outcome("processed", "; ".join(notes) or None)
    return Outcome("ignored", ignored[0])


# --- payments made outside the processor ----------------------------------------------


@dataclass(frozen=True, slots=True)
class ManualPayment:
    id: str
    amount: int
    method: str
    reference: str | None
    received_at: datetime | None
    # The caller's body, to tell a repeat (the same body) from a conflict (another one).
    request: dict[str, Any]


async def record_manual(books: Books, invoice_id: str,
                        data: ManualPayment) -> tuple[dict[str, Any], bool]:
    """Money received outside the processor (a cheque, a transfer), applied exactly like a
    capture; (the payment, created?). The same id and body again is a no-op."""
    async with books.transaction() as conn:
        invoice = await locks.invoice_or_not_found(conn, invoice_id)
        # The id is claimed first, in one statement: two calls with one id never both pass.
        claimed = await conn.fetchval(
            """insert into payments (id, invoice_id, currency, status, amount, processor,
                                     source, method, reference, received_at, request)
               values ($1, $2, $3, 'processing', $4, 'manual', 'manual', $5, $6, $7, $8)
               on conflict (id) do nothing returning true""",
            data.id, invoice_id, invoice["currency"], data.amount, data.method, data.reference,
            data.received_at, json.dumps(data.request))
        if not claimed:
            existing = await conn.fetchrow("select * from payments where id = $1", data.id)
            check_same_request(existing, "invoice_id", invoice_id, data.request, "payment", data.id)
            return payment_view(existing), False
        if status_of(invoice) in ("draft", "void"):
            raise Invalid("invoice_not_open", f"the invoice is {status_of(invoice)}")
        await capture(conn, PaymentFacts(data.id, invoice_id, data.amount, invoice["currency"],
                                         "manual", method=data.method, reference=data.reference),
                      "credit", known=Known(books))  # its messages read the endpoints once
        row = await conn.fetchrow("select * from payments where id = $1", data.id)
        return payment_view(row), True
