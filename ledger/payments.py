"""Processor payments applied to invoices: captures, processing, failures, refunds.

One row per payment id (the PaymentIntent), so a `checkout.session.completed`
and a `payment_intent.succeeded` for one payment count once, and a refund
that arrives before its capture is kept on the row and taken back when the
capture lands. Callers run these inside the event's transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import asyncpg

from core.errors import PermanentError, RetryLater
from ledger import money
from ledger.checkout import session_finished
from ledger.credit import change_credit, locked_balance
from ledger.facts import (
    Captured,
    CheckoutFinished,
    Fact,
    Ignored,
    PaymentFacts,
    PaymentFailed,
    Processing,
    Refunded,
)
from ledger.inbox import Outcome, Policy
from ledger.invoices import changed
from ledger.outbox import invoice_audience, owe_email, owe_refund
from ledger.requests import request_paid
from ledger.status import is_open, lock_invoice, remaining_of


async def _invoice_for(conn: asyncpg.Connection, invoice_id: str,
                       currency: str) -> asyncpg.Record:
    invoice = await lock_invoice(conn, invoice_id)
    if invoice is None:
        # The application may create the invoice a moment after the payment.
        raise RetryLater(f"unknown invoice {invoice_id}")
    if invoice["currency"] != currency:
        raise PermanentError(
            f"currency {currency} does not match invoice {invoice_id} currency {invoice['currency']}")
    return invoice


async def _lock_payment(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from payments where id = $1 for update", payment_id)


def _check_same_invoice(payment: asyncpg.Record | None, facts: PaymentFacts) -> None:
    if payment is not None and payment["invoice_id"] != facts.invoice_id:
        raise PermanentError(
            f"payment {facts.payment_id} belongs to invoice {payment['invoice_id']}, "
            f"not {facts.invoice_id}")


async def capture(conn: asyncpg.Connection, facts: PaymentFacts,
                  policy: Literal["credit", "refund"]) -> str:
    """Apply captured money once; what happened, for the event's record."""
    invoice = await _invoice_for(conn, facts.invoice_id, facts.currency)
    payment = await _lock_payment(conn, facts.payment_id)
    _check_same_invoice(payment, facts)
    if payment is not None and payment["status"] == "succeeded":
        return "payment already applied"

    # Money on an invoice that is not open (draft, void, paid) is all excess.
    left = remaining_of(invoice) if is_open(invoice) else 0
    split = money.split_capture(facts.amount, left)
    credited = split.excess if policy == "credit" else 0
    excess_refunded = split.excess - credited
    payment = await conn.fetchrow(
        """insert into payments (id, invoice_id, payment_request_id, currency, status, amount,
                                 applied, credited, excess_refunded)
           values ($1, $2, $3, $4, 'succeeded', $5, $6, $7, $8)
           on conflict (id) do update set
               status = 'succeeded', amount = excluded.amount, applied = excluded.applied,
               credited = excluded.credited, excess_refunded = excluded.excess_refunded,
               payment_request_id = coalesce(payments.payment_request_id,
                                             excluded.payment_request_id),
               updated_at = now()
           returning *""",
        facts.payment_id, facts.invoice_id, facts.payment_request_id, facts.currency,
        facts.amount, split.applied, credited, excess_refunded,
    )
    updated = await conn.fetchrow(
        """update invoices set amount_paid = amount_paid + $2, updated_at = now()
           where id = $1 returning *""",
        invoice["id"], split.applied)
    owes_receipt = split.applied > 0 and remaining_of(updated) > 0
    audience = await invoice_audience(conn, invoice["id"]) if credited or owes_receipt else {}
    if credited:
        balance = await change_credit(conn, invoice["customer_id"], facts.currency, credited,
                                      "overpayment", payment_id=facts.payment_id,
                                      invoice_id=invoice["id"])
        await owe_email(conn, "credit_issued", facts.payment_id, invoice_id=invoice["id"],
                        to=audience["to"][:1], number=audience["number"], credited=credited,
                        balance=balance, currency=facts.currency)
    if excess_refunded:
        await owe_refund(conn, payment["processor"], facts.payment_id, excess_refunded,
                         key=f"refund-excess:{facts.payment_id}", reason="excess",
                         invoice_id=invoice["id"])
    if facts.payment_request_id:
        await request_paid(conn, facts.invoice_id, facts.payment_request_id)
    after = await changed(conn, invoice, updated)
    if owes_receipt:
        await owe_email(conn, "payment_received", facts.payment_id, invoice_id=invoice["id"],
                        to=audience["to"], number=audience["number"], amount=split.applied,
                        remaining=remaining_of(after), currency=facts.currency)
    if payment["refunded"]:
        # A refund reported before this capture arrived: take it back now.
        await _take_back(conn, payment["refunded"], payment, after)
    return f"captured {facts.amount}: applied {split.applied}, excess {split.excess}"


async def processing(conn: asyncpg.Connection, facts: PaymentFacts) -> str:
    """An asynchronous payment (bank transfer, debit) started: recorded, nothing applied."""
    await _invoice_for(conn, facts.invoice_id, facts.currency)
    payment = await _lock_payment(conn, facts.payment_id)
    _check_same_invoice(payment, facts)
    if payment is not None:
        return f"payment already {payment['status']}"
    await conn.execute(
        """insert into payments (id, invoice_id, payment_request_id, currency, status, amount)
           values ($1, $2, $3, $4, 'processing', $5)""",
        facts.payment_id, facts.invoice_id, facts.payment_request_id, facts.currency, facts.amount,
    )
    return f"payment processing: {facts.amount}"


async def failed(conn: asyncpg.Connection, facts: PaymentFacts) -> str:
    await _invoice_for(conn, facts.invoice_id, facts.currency)
    payment = await _lock_payment(conn, facts.payment_id)
    _check_same_invoice(payment, facts)
    if payment is not None and payment["status"] == "succeeded":
        return "payment already succeeded"  # money received stays received
    await conn.execute(
        """insert into payments (id, invoice_id, payment_request_id, currency, status, amount)
           values ($1, $2, $3, $4, 'failed', $5)
           on conflict (id) do update set status = 'failed', updated_at = now()""",
        facts.payment_id, facts.invoice_id, facts.payment_request_id, facts.currency, facts.amount,
    )
    return "payment failed"


async def refund(conn: asyncpg.Connection, payment_id: str, reported: int, currency: str,
                 invoice_id: str | None, charge_amount: int) -> str | None:
    """The processor's cumulative amount_refunded for a payment (charge.refunded).

    None when neither the payment nor an invoice id is known: not ours.
    """
    known = await conn.fetchval("select invoice_id from payments where id = $1", payment_id)
    invoice_id = known or invoice_id
    if invoice_id is None:
        return None
    # Lock order: invoice, payment, balance (as everywhere).
    invoice = await _invoice_for(conn, invoice_id, currency)
    payment = await _lock_payment(conn, payment_id)
    if payment is None:
        # The refund came before its capture: keep the figure for the capture to apply.
        await conn.execute(
            """insert into payments (id, invoice_id, currency, status, amount, refunded)
               values ($1, $2, $3, 'processing', $4, $5)""",
            payment_id, invoice_id, currency, max(charge_amount, reported), reported,
        )
        return f"refund of {reported} kept until its payment is captured"
    if payment["status"] != "succeeded":
        await conn.execute(
            "update payments set refunded = greatest(refunded, $2), updated_at = now() where id = $1",
            payment_id, reported,
        )
        return f"refund of {reported} kept until its payment is captured"
    return await _take_back(conn, reported, payment, invoice)


async def _take_back(conn: asyncpg.Connection, reported: int, payment: asyncpg.Record,
                     invoice: asyncpg.Record) -> str:
    """Take a refund increase back from a payment and its invoice, both already locked."""
    payment_id = payment["id"]
    absorbed = (payment["refund_from_credit"] + payment["refund_from_paid"]
                + payment["refund_unrecovered"])
    new_refunded, increase = money.refund_increase(
        reported=reported, refunded=payment["refunded"],
        excess_refunded=payment["excess_refunded"], absorbed=absorbed)
    if increase == 0:
        await conn.execute("update payments set refunded = $2 where id = $1",
                           payment_id, new_refunded)
        return f"refunded total {new_refunded}: nothing more to take back"
    balance = await locked_balance(conn, invoice["customer_id"], payment["currency"])
    split = money.split_refund(
        increase, credit_from_payment=payment["credited"] - payment["refund_from_credit"],
        balance=balance, applied_from_payment=payment["applied"] - payment["refund_from_paid"])
    await conn.execute(
        """update payments set refunded = $2, refund_from_credit = refund_from_credit + $3,
                  refund_from_paid = refund_from_paid + $4,
                  refund_unrecovered = refund_unrecovered + $5, updated_at = now()
           where id = $1""",
        payment_id, new_refunded, split.from_credit, split.from_paid, split.unrecovered,
    )
    if split.from_credit:
        await change_credit(conn, invoice["customer_id"], payment["currency"], -split.from_credit,
                            "refund_takeback", payment_id=payment_id, invoice_id=invoice["id"])
    if split.from_paid:
        await conn.execute("update invoices set amount_paid = amount_paid - $2 where id = $1",
                           invoice["id"], split.from_paid)
        await changed(conn, invoice)
    note = (f"refund +{increase}: {split.from_credit} from credit, {split.from_paid} from the "
            f"invoice")
    if split.unrecovered:
        note += f", {split.unrecovered} unrecovered (credit already spent)"
    return note


async def apply_facts(conn: asyncpg.Connection, facts: Sequence[Fact], policy: Policy) -> Outcome:
    """Apply what a processor's event says, in the event's transaction."""
    notes: list[str] = []
    ignored: list[str] = []
    for fact in facts:
        match fact:
            case Captured(payment):
                notes.append(await capture(conn, payment, policy.overpayment))
            case Processing(payment):
                notes.append(await processing(conn, payment))
            case PaymentFailed(payment):
                notes.append(await failed(conn, payment))
            case CheckoutFinished(session_id, status):
                await session_finished(conn, session_id, status)
            case Refunded(payment_id, invoice_id, cumulative, currency, payment_amount):
                note = await refund(conn, payment_id, cumulative, currency, invoice_id,
                                    payment_amount)
                if note is None:
                    ignored.append("no metadata.invoice_id and no known payment")
                else:
                    notes.append(note)
            case Ignored(reason):
                ignored.append(reason)
    if notes or not ignored:
        return Outcome("processed", "; ".join(notes) or None)
    return Outcome("ignored", ignored[0])
