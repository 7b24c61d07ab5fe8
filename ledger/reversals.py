"""Reversals: the customer's bank taking a payment's money back, and giving it back (§4).

A reversal of R (a chargeback, a late failure) follows the refund rule: it takes back
first what the payment put on the customer's credit balance and is still there, then
reduces the invoice's `amount_paid`, reopening a paid invoice; what neither holds (credit
already spent elsewhere) is unrecovered. The payment shows it as `reversed`; the merchant
(the invoice's notify_emails) is mailed `payment_reversed` and `payment.reversed` is told.
Undoing it (a dispute won, a chargeback cancelled) gives back what it took, last taken
first (`money.split_give_back`): to the invoice as far as it has room, the rest as credit.

Each reversal is one row under the processor's id for it. What the processor says only
sets the row's two flags (taken, given back); the books follow the flags, each step once.
So the news arrives in any order and any number of times and the money moves once: a
reversal given back before its taking was heard moves nothing at all.

Callers hold the event's transaction; the invoice is locked first, then the payment.
"""

from __future__ import annotations

import asyncpg

from core.errors import PermanentError, RetryLater
from delivery.outbound import owe_event
from delivery.outbox import invoice_audience, owe_email
from ledger import locks, money
from ledger.context import Known
from ledger.credit import change_credit
from ledger.facts import Reversed
from ledger.invoices import changed
from ledger.status import remaining_of


async def reported(conn: asyncpg.Connection, fact: Reversed, *,
                   known: Known) -> str:
    """What the processor says of one reversal of a payment."""
    held = await locks.payment_with_invoice(conn, fact.payment_id, known=known)
    if held is None:
        # The capture may be recorded a moment later; never ignored for good (§3).
        raise RetryLater(f"unknown payment {fact.payment_id}")
    if held.payment["currency"] != fact.currency:
        raise PermanentError(f"currency {fact.currency} does not match payment "
                             f"{fact.payment_id}")
    if held.payment["status"] != "succeeded":
        raise RetryLater(f"payment {fact.payment_id} is not captured yet")
    await conn.execute(
        """insert into reversals (id, payment_id, invoice_id, amount)
           values ($1, $2, $3, $4) on conflict (id) do nothing""",
        fact.reversal_id, fact.payment_id, held.payment["invoice_id"], fact.amount)
    row = await conn.fetchrow(
        """update reversals set taken = taken or not $2, given_back = given_back or $2,
                  updated_at = now()
           where id = $1 returning *""",
        fact.reversal_id, fact.given_back)
    if row["payment_id"] != fact.payment_id:
        raise PermanentError(f"reversal {fact.reversal_id} is of payment {row['payment_id']}, "
                             f"not {fact.payment_id}")
    if row["booked"] == "no" and row["taken"] and not row["given_back"]:
        return await _take(conn, held, row, known)
    if row["booked"] == "reversed" and row["given_back"]:
        return await _give(conn, held, row, known)
    return f"reversal {fact.reversal_id}: nothing to move"


async def _take(conn: asyncpg.Connection, held: locks.Locked, row: asyncpg.Record,
                known: Known) -> str:
    invoice, payment = held.invoice, held.payment
    balance = await locks.credit_balance(conn, invoice["customer_id"], payment["currency"])
    split = money.split_refund(
        row["amount"],
        credit_from_payment=payment["credited"] - payment["refund_from_credit"]
        - payment["reversal_from_credit"],
        balance=balance,
        applied_from_payment=payment["applied"] - payment["refund_from_paid"]
        - payment["reversal_from_paid"])
    await conn.execute(
        """update payments set reversed = reversed + $2,
                  reversal_from_credit = reversal_from_credit + $3,
                  reversal_from_paid = reversal_from_paid + $4, updated_at = now()
           where id = $1""",
        payment["id"], row["amount"], split.from_credit, split.from_paid)
    await conn.execute(
        """update reversals set booked = 'reversed', from_credit = $2, from_paid = $3,
                  unrecovered = $4, updated_at = now()
           where id = $1""",
        row["id"], split.from_credit, split.from_paid, split.unrecovered)
    if split.from_credit:
        await change_credit(conn, invoice["customer_id"], payment["currency"],
                            -split.from_credit, "taken_back", payment_id=payment["id"],
                            invoice_id=invoice["id"], known=known)
    if split.from_paid:
        await conn.execute("update invoices set amount_paid = amount_paid - $2 where id = $1",
                           invoice["id"], split.from_paid)
    await changed(conn, invoice, known=known)
    audience = await invoice_audience(conn, invoice["id"], known=known)
    merchant = audience["notify_emails"]
    if merchant:
        await owe_email(conn, "payment_reversed", row["id"], invoice_id=invoice["id"],
                        to=merchant, audience=audience, number=audience["number"],
                        amount=row["amount"], payment_id=payment["id"],
                        currency=payment["currency"])
    await owe_event(conn, "payment.reversed", invoice_id=invoice["id"], object_id=payment["id"],
                    known=known)
    return (f"reversal {row['id']} -{row['amount']}: {split.from_credit} from credit, "
            f"{split.from_paid} from the invoice, {split.unrecovered} unrecovered")


async def _give(conn: asyncpg.Connection, held: locks.Locked, row: asyncpg.Record,
                known: Known) -> str:
    invoice, payment = held.invoice, held.payment
    # Money given back to a void invoice is the customer's credit, not the invoice's.
    room = remaining_of(invoice) if invoice["voided_at"] is None else 0
    back = money.split_give_back(row["amount"], unrecovered=row["unrecovered"],
                                 from_paid=row["from_paid"], from_credit=row["from_credit"],
                                 room=room)
    await conn.execute(
        """update payments set reversed = reversed - $2,
                  reversal_from_paid = reversal_from_paid - $3 - $4,
                  reversal_from_credit = reversal_from_credit - $5,
                  applied = applied - $4, credited = credited + $4, updated_at = now()
           where id = $1""",
        payment["id"], row["amount"], back.to_invoice, back.overflow, back.to_credit)
    await conn.execute("update reversals set booked = 'undone', updated_at = now() where id = $1",
                       row["id"])
    if back.to_invoice:
        await conn.execute("update invoices set amount_paid = amount_paid + $2 where id = $1",
                           invoice["id"], back.to_invoice)
    credited = back.overflow + back.to_credit
    if credited:
        # The kind of money that comes back because a take-back did not hold (as a refund
        # that failed): there is no other kind for it in the ledger's list (§5).
        balance = await change_credit(conn, invoice["customer_id"], payment["currency"],
                                      credited, "refund_fallback", payment_id=payment["id"],
                                      invoice_id=invoice["id"], known=known)
        audience = await invoice_audience(conn, invoice["id"], known=known)
        await owe_email(conn, "credit_issued", f"reversal:{row['id']}", invoice_id=invoice["id"],
                        to=audience["to"][:1], audience=audience, number=audience["number"],
                        credited=credited, balance=balance, currency=payment["currency"])
    await changed(conn, invoice, known=known)
    await owe_event(conn, "payment.succeeded", invoice_id=invoice["id"], object_id=payment["id"],
                    known=known)
    return (f"reversal {row['id']} undone: {back.to_invoice} back to the invoice, "
            f"{credited} to credit")
