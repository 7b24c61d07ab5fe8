"""Credit notes: taking part of an invoice back, before or after it was paid (§4).

A credit note of A takes min(A, remaining) off what is owed (pre-payment,
counted in `amount_credit_noted`); the rest (post-payment), never more than
what was paid or credited and not yet given back by earlier credit notes,
goes to the customer's credit balance, or with `refund` is refunded through
the processor against the invoice's processor payments, newest first. That
refund belongs to the credit note: it never lowers `amount_paid` nor reopens
the invoice (`ledger.refunds`, purpose `credit_note`).

What goes back to the balance is taken first out of the credit applied to the
invoice (`from_credit`), so that voiding the invoice later gives back only the
applied credit no credit note returned already: no credit is returned twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.errors import Conflict, Invalid
from core.tx import Books
from delivery.outbound import owe_event
from delivery.outbox import invoice_audience, owe_email
from ledger import locks, money, refunds
from ledger.context import Known
from ledger.credit import change_credit
from ledger.invoices import changed
from ledger.repeats import check_same_request
from ledger.status import remaining_of, status_of
from reads.views import credit_note_view


@dataclass(frozen=True, slots=True)
class CreditNoteInput:
    id: str
    amount: int
    reason: str | None
    refund: bool
    request: dict[str, Any]


async def issue(books: Books, invoice_id: str,
                data: CreditNoteInput) -> tuple[dict[str, Any], bool]:
    """Issue a credit note; (the credit note, created?). The same id and body again is a
    no-op; another body under the same id is a conflict."""
    async with books.transaction() as conn:
        invoice = await locks.invoice_or_not_found(conn, invoice_id)
        # The id is claimed first, in one statement: two calls with one id (on this invoice
        # or another) never both pass, and a repeat waits for the first and answers it. The
        # split is written once the note is known to be new; a refusal rolls the claim back.
        claimed = await conn.fetchval(
            """insert into credit_notes (id, invoice_id, amount, pre_payment_amount,
                                         post_payment_amount, refund, reason, request)
               values ($1, $2, $3, $3, 0, $4, $5, $6)
               on conflict (id) do nothing returning true""",
            data.id, invoice_id, data.amount, data.refund, data.reason,
            json.dumps(data.request))
        if not claimed:
            existing = await conn.fetchrow("select * from credit_notes where id = $1", data.id)
            check_same_request(existing, "invoice_id", invoice_id, data.request, "credit note",
                               data.id)
            return credit_note_view(existing), False
        if status_of(invoice) in ("draft", "void"):
            raise Invalid("invoice_not_open", f"the invoice is {status_of(invoice)}")
        earlier = await conn.fetchrow(
            """select coalesce(sum(amount), 0) as amount,
                      coalesce(sum(post_payment_amount), 0) as post,
                      coalesce(sum(from_credit), 0) as from_credit
               from credit_notes where invoice_id = $1 and id <> $2""", invoice_id, data.id)
        returnable = invoice["amount_paid"] + invoice["amount_credited"] - earlier["post"]
        split = money.split_credit_note(data.amount, left=remaining_of(invoice),
                                        returnable=max(0, returnable))
        if split is None or earlier["amount"] + data.amount > invoice["total"]:
            raise Invalid("amount_exceeds_creditable",
                          "credit notes never add up to more than the invoice, nor give back "
                          "more than was paid")
        sources = await locks.processor_payments(conn, invoice_id) if data.refund else []
        if data.refund and sources and not books.can_pay:
            raise Conflict("processor_not_configured",
                           "refunds through the processor need it configured")
        await conn.execute(
            """update credit_notes set pre_payment_amount = $2, post_payment_amount = $3
               where id = $1""",
            data.id, split.pre_payment, split.post_payment)
        if split.pre_payment:
            await conn.execute(
                "update invoices set amount_credit_noted = amount_credit_noted + $2 where id = $1",
                invoice_id, split.pre_payment)
        left = split.post_payment
        known = Known(books)  # the endpoints, read once for the messages it owes
        for payment in sources:
            take = min(left, await refunds.refundable(conn, payment))
            if take:
                await refunds.ask(conn, locks.Locked(invoice, payment),
                                  refund_id=f"cn:{data.id}:{payment['id']}", amount=take,
                                  purpose="credit_note", reason=data.reason,
                                  credit_note_id=data.id, known=known)
                left -= take
        credited = left  # not refunded (or nothing to refund through): credited
        if credited:
            await change_credit(conn, invoice["customer_id"], invoice["currency"], credited,
                                "credit_note", invoice_id=invoice_id, credit_note_id=data.id,
                                reason=data.reason, known=known)
            from_credit = money.credit_returned(
                credited, applied=invoice["amount_credited"], returned=earlier["from_credit"])
            await conn.execute(
                """update credit_notes set credited_amount = credited_amount + $2,
                          from_credit = $3
                   where id = $1""",
                data.id, credited, from_credit)
        await changed(conn, invoice, known=known)
        audience = await invoice_audience(conn, invoice_id)
        await owe_email(conn, "credit_note_issued", data.id, invoice_id=invoice_id,
                        to=audience["to"], number=audience["number"], amount=data.amount,
                        pre_payment=split.pre_payment, credited=credited,
                        refunded=split.post_payment - credited, reason=data.reason,
                        currency=invoice["currency"])
        await owe_event(conn, "credit_note.created", invoice_id=invoice_id, object_id=data.id,
                        known=known)
        row = await conn.fetchrow("select * from credit_notes where id = $1", data.id)
        return credit_note_view(row), True
