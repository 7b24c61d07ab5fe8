"""Refunds, one by one: what the processor reports, what settle asks for, what the books did.

Every refund of a payment is a row (`refunds`): one settle asked for (an
overpayment's excess, a merchant's refund, a credit note's), or one the
processor reported that settle did not ask for (`external`). Reports arrive in
any order and any number of times: a cumulative refund report (the payment's
refunded total, and the refunds it lists), a refund's news (one refund's
status), and the processor's answer to settle's own request. Each report only
moves a refund's status forward (`money.later_status`); then `settle_payment`
recomputes the payment's totals (`money.refund_totals`) and moves the books by
the difference:

- a refund counted under the refund rule (external, merchant) takes back what
  the payment left on the customer's credit first, then reduces the invoice's
  `amount_paid`, reopening it (§4); one that fails gives it back;
- an overpayment's refund is excess leaving: counted when the processor
  confirms it; if it fails for good the excess is credited instead;
- a credit note's refund belongs to the credit note: it never touches
  `amount_paid`; if it fails, the credit note credits the customer instead.

Callers hold the invoice lock, then the payment's (the order everywhere).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core.errors import Conflict, Invalid, NotFound, PermanentError, RetryLater
from core.processor import Processor
from core.tx import Books
from delivery.outbound import owe_event
from delivery.outbox import invoice_audience, owe_email, owe_refund
from ledger import locks, money
from ledger.context import Known
from ledger.credit import change_credit
from ledger.facts import Cumulative, RefundState
from ledger.invoices import changed
from ledger.repeats import check_same_request
from ledger.status import remaining_of


# --- what settle asks for --------------------------------------------------------------


async def ask(conn: asyncpg.Connection, held: locks.Locked, *, refund_id: str, amount: int,
              purpose: str, reason: str | None = None, credit_note_id: str | None = None,
              request: str | None = None, known: Known) -> None:
    """Ask for a refund of a (locked) payment: through the processor after the commit
    (the refund's id is its idempotency key), or at once for a manual payment."""
    if not await claim(conn, held, refund_id=refund_id, amount=amount, purpose=purpose,
                       reason=reason, credit_note_id=credit_note_id, request=request):
        # settle makes these ids itself, once per capture or credit note.
        raise PermanentError(f"refund {refund_id} was already asked for")
    await carry_out(conn, held, refund_id=refund_id, amount=amount, purpose=purpose,
                    known=known)


async def claim(conn: asyncpg.Connection, held: locks.Locked, *, refund_id: str, amount: int,
                purpose: str, reason: str | None = None, credit_note_id: str | None = None,
                request: str | None = None) -> bool:
    """The refund's row, under its id, in one statement; False when the id is taken (a
    concurrent call with it waits for the first to commit, then finds it taken)."""
    payment = held.payment
    claimed: bool = await conn.fetchval(
        """insert into refunds (id, payment_id, invoice_id, amount, purpose, status,
                                credit_note_id, reason, request)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           on conflict (id) do nothing returning true""",
        refund_id, payment["id"], payment["invoice_id"], amount, purpose,
        "succeeded" if payment["source"] == "manual" else "requested", credit_note_id, reason,
        request) or False
    return claimed


async def carry_out(conn: asyncpg.Connection, held: locks.Locked, *, refund_id: str, amount: int,
                    purpose: str, known: Known) -> None:
    """A claimed refund happens: at once for a manual payment, else owed to the processor."""
    payment = held.payment
    if payment["source"] == "manual":
        await settle_payment(conn, held.invoice["id"], payment["id"], known=known)
    else:
        # The refund's id is the processor's idempotency key; the outbox row's own key
        # is kept apart from the mails' and expiries' keys.
        await owe_refund(conn, payment["processor"], payment["id"], amount,
                         key=refund_id if refund_id.startswith("refund-") else f"refund:{refund_id}",
                         reason=purpose, refund_id=refund_id, invoice_id=payment["invoice_id"])


async def answered(conn: asyncpg.Connection, refund_id: str, processor_refund_id: str,
                   status: str, *, made_at: datetime | None = None, known: Known) -> None:
    """The processor's answer to settle's own request (it confirms, or refuses); `made_at`
    is when the processor made the refund (its clock), when it says."""
    invoice_id = await conn.fetchval("select invoice_id from refunds where id = $1", refund_id)
    if invoice_id is None:
        return
    await locks.invoice(conn, invoice_id)
    row = await locks.refund(conn, refund_id)
    assert row is not None  # its invoice was read from it; refunds are never deleted
    # One the processor answers as failed failed as it was made: no later report holds it.
    await conn.execute(
        """update refunds set processor_refund_id = coalesce(processor_refund_id, $2),
                  status = $3, made_at = coalesce(made_at, $4),
                  failed_at = least(failed_at, $5), updated_at = now()
           where id = $1""",
        refund_id, processor_refund_id, money.later_status(row["status"], status), made_at,
        made_at if status in money.FAILED else None)
    await settle_payment(conn, invoice_id, row["payment_id"], known=known)


async def refused(conn: asyncpg.Connection, refund_id: str, reason: str, *,
                  known: Known) -> None:
    """The processor would not make it (or, after 24 hours of trying, says it never made
    it): it never happens."""
    invoice_id = await conn.fetchval("select invoice_id from refunds where id = $1", refund_id)
    if invoice_id is None:
        return
    await locks.invoice(conn, invoice_id)
    row = await locks.refund(conn, refund_id)
    assert row is not None  # its invoice was read from it; refunds are never deleted
    if row["status"] != "requested":
        return  # the processor made it after all: its own reports decide
    await conn.execute(
        "update refunds set status = 'failed', reason = $2, updated_at = now() where id = $1",
        refund_id, reason[:500])
    await settle_payment(conn, invoice_id, row["payment_id"], known=known)


async def given_up(pool: asyncpg.Pool, refund_id: str) -> bool:
    """Whether settle already gave this refund up (and the books fell back)."""
    return bool(await pool.fetchval(
        "select status = 'failed' and processor_refund_id is null "
        "from refunds where id = $1", refund_id))


# --- what the processor reports ---------------------------------------------------------


async def reported(conn: asyncpg.Connection, payment_id: str, invoice_id: str | None,
                   cumulative: Cumulative, currency: str, payment_amount: int,
                   refunds: tuple[RefundState, ...], *, source: str,
                   known: Known) -> str:
    """A payment's cumulative refunded total, with the refunds it lists (a cumulative
    refund report), from processor `source`.

    The newest report is kept, by the processor's time (the larger figure on a tie, or
    when neither says when): an older one, delivered late, changes nothing; a newer one
    may be lower, once a refund failed (`money.refund_totals`)."""
    held = await _payment_for_report(conn, payment_id, invoice_id, currency, payment_amount,
                                     source, known)
    await conn.execute(
        """update payments set reported_refunded = $2, reported_at = $3, updated_at = now()
           where id = $1
             and (coalesce($3::timestamptz, '-infinity'), $2::bigint)
                 > (coalesce(reported_at, '-infinity'), reported_refunded)""",
        payment_id, cumulative.amount, cumulative.at)
    for refund in refunds:
        await _note(conn, held.payment, refund)
    note = await settle_payment(conn, held.invoice["id"], payment_id, known=known)
    return f"refunded total reported {cumulative.amount}: {note}"


async def refund_changed(conn: asyncpg.Connection, payment_id: str, invoice_id: str | None,
                         currency: str, refund: RefundState, *, source: str,
                         known: Known) -> str:
    """One refund's news (its status), from processor `source`."""
    held = await _payment_for_report(conn, payment_id, invoice_id, currency, refund.amount,
                                     source, known)
    await _note(conn, held.payment, refund)
    note = await settle_payment(conn, held.invoice["id"], payment_id, known=known)
    return f"refund {refund.id} {refund.status}: {note}"


async def _payment_for_report(conn: asyncpg.Connection, payment_id: str,
                              invoice_id: str | None, currency: str,
                              payment_amount: int, source: str, known: Known) -> locks.Locked:
    """The reported payment, locked; one reported before its capture is kept as a
    placeholder for the capture to find, the reporting processor's (`source`). Unknown
    and unnamed: retried (§3)."""
    held = await locks.payment_with_invoice(conn, payment_id, known=known)
    if held is not None:
        if held.payment["currency"] != currency:
            raise PermanentError(f"currency {currency} does not match payment {payment_id}")
        return held
    if invoice_id is None:
        # The capture may be recorded a moment later; never ignored for good.
        raise RetryLater(f"unknown payment {payment_id}")
    invoice = await locks.invoice_for_payment(conn, invoice_id, currency, known=known)
    await conn.execute(
        """insert into payments (id, invoice_id, currency, status, amount, processor, source)
           values ($1, $2, $3, 'processing', $4, $5, $5) on conflict (id) do nothing""",
        payment_id, invoice_id, currency, payment_amount, source)
    payment = await locks.payment(conn, payment_id)
    assert payment is not None
    return locks.Locked(invoice, payment)


async def _note(conn: asyncpg.Connection, payment: asyncpg.Record, refund: RefundState) -> None:
    """Record one refund of this payment as the processor describes it: settle's own (by
    the id settle put in its metadata, when that refund is of this very payment and not
    yet tied to another processor refund), or one settle did not ask for."""
    row = await locks.reported_refund(conn, payment["id"], refund.id, refund.settle_id)
    # A report that it failed bounds when it failed: the earliest such report is kept.
    failed_at = refund.reported_at if refund.status in money.FAILED else None
    if row is None:
        inserted = await conn.fetchval(
            """insert into refunds (id, processor_refund_id, payment_id, invoice_id, amount,
                                    purpose, status, made_at, failed_at)
               values ($1, $1, $2, $3, $4, 'external', $5, $6, $7)
               on conflict do nothing returning true""",
            refund.id, payment["id"], payment["invoice_id"], refund.amount, refund.status,
            refund.created, failed_at)
        if not inserted:
            raise PermanentError(f"refund {refund.id} is recorded for another payment, "
                                 f"not {payment['id']}")
        return
    await conn.execute(
        """update refunds set processor_refund_id = coalesce(processor_refund_id, $2),
                  status = $3, made_at = coalesce(made_at, $4),
                  failed_at = least(failed_at, $5), updated_at = now()
           where id = $1""",
        row["id"], refund.id, money.later_status(row["status"], refund.status), refund.created,
        failed_at)


# --- the books -----------------------------------------------------------------------------


async def settle_payment(conn: asyncpg.Connection, invoice_id: str, payment_id: str, *,
                         known: Known) -> str:
    """Bring the books in line with a payment's refunds (invoice and payment locked by
    the caller or locked here in that order). Safe to call any number of times."""
    invoice = await locks.invoice(conn, invoice_id, known=known)
    payment = await locks.payment(conn, payment_id)
    assert invoice is not None and payment is not None
    if payment["status"] != "succeeded":
        return "kept until the payment is captured"
    rows = await conn.fetch("select * from refunds where payment_id = $1 order by created_at, id",
                            payment_id)
    for row in rows:
        invoice, payment = await _book(conn, invoice, payment, row, known)
        await _tell_if_succeeded(conn, invoice, payment, row, known)
    totals = money.refund_totals(payment["reported_refunded"], [
        money.RefundLine(r["amount"], r["status"], r["purpose"],
                         r["processor_refund_id"] is not None, made_at=r["made_at"],
                         failed_at=r["failed_at"]) for r in rows],
        reported_at=payment["reported_at"])
    taken = (payment["refund_from_credit"] + payment["refund_from_paid"]
             + payment["refund_unrecovered"])
    refunded = min(totals.refunded, payment["amount"])
    await conn.execute("update payments set refunded = $2, updated_at = now() where id = $1",
                       payment_id, refunded)
    if refunded != payment["refunded"]:
        await owe_event(conn, "payment.refunded", invoice_id=invoice_id, object_id=payment_id,
                        known=known)
    if totals.by_rule > taken:
        return await _take_back(conn, invoice, payment, totals.by_rule - taken, known)
    if totals.by_rule < taken:
        return await _give_back(conn, invoice, payment, taken - totals.by_rule, known)
    return f"refunded {totals.refunded}: nothing to move"


async def _book(conn: asyncpg.Connection, invoice: asyncpg.Record, payment: asyncpg.Record,
                row: asyncpg.Record,
                known: Known) -> tuple[asyncpg.Record, asyncpg.Record]:
    """What a refund's purpose does once it is confirmed, or once it fails (each once)."""
    status = row["status"]
    to = "counted" if status in money.COUNTED else "failed" if status in money.FAILED else None
    if to is None or row["booked"] == to or row["booked"] == "failed":
        return invoice, payment
    await conn.execute("update refunds set booked = $2 where id = $1", row["id"], to)
    amount, purpose = row["amount"], row["purpose"]
    if purpose == "excess":
        was = "excess_pending" if row["booked"] == "no" else "excess_refunded"
        now = "excess_refunded" if to == "counted" else "credited"
        payment = await conn.fetchrow(
            f"""update payments set {was} = {was} - $2, {now} = {now} + $2, updated_at = now()
                where id = $1 returning *""",
            payment["id"], amount)
        if to == "failed":
            await _fall_back(conn, invoice, payment, amount, credit_note_id=None, known=known)
    elif purpose == "credit_note":
        if row["booked"] == "counted":
            await conn.execute(
                "update credit_notes set refunded_amount = refunded_amount - $2 where id = $1",
                row["credit_note_id"], amount)
        column = "refunded_amount" if to == "counted" else "credited_amount"
        await conn.execute(
            f"update credit_notes set {column} = {column} + $2 where id = $1",
            row["credit_note_id"], amount)
        if to == "failed":
            await _fall_back(conn, invoice, payment, amount, credit_note_id=row["credit_note_id"],
                             known=known)
    return invoice, payment


async def _fall_back(conn: asyncpg.Connection, invoice: asyncpg.Record, payment: asyncpg.Record,
                     amount: int, *, credit_note_id: str | None, known: Known) -> None:
    """A refund of settle's own that failed for good: the customer gets credit instead."""
    balance = await change_credit(conn, invoice["customer_id"], payment["currency"], amount,
                                  "refund_fallback", payment_id=payment["id"],
                                  invoice_id=invoice["id"], credit_note_id=credit_note_id,
                                  known=known)
    audience = await invoice_audience(conn, invoice["id"], known=known)
    await owe_email(conn, "credit_issued", f"fallback:{payment['id']}:{credit_note_id or ''}",
                    invoice_id=invoice["id"], to=audience["to"][:1], number=audience["number"],
                    credited=amount, balance=balance, currency=payment["currency"],
                    because="refund_failed")


async def _tell_if_succeeded(conn: asyncpg.Connection, invoice: asyncpg.Record,
                             payment: asyncpg.Record, row: asyncpg.Record,
                             known: Known) -> None:
    """A refund of settle's own (the merchant's, a credit note's, an overpayment's) is
    mailed once it has succeeded: never while it is only pending, which may still fail
    (the books move earlier, when the processor accepts it). Once per refund."""
    if row["status"] != "succeeded" or row["purpose"] == "external" \
            or row["mailed_at"] is not None:
        return
    await conn.execute("update refunds set mailed_at = now() where id = $1", row["id"])
    audience = await invoice_audience(conn, invoice["id"], known=known)
    await owe_email(conn, "refund_issued", row["id"], invoice_id=invoice["id"],
                    to=audience["to"], number=audience["number"], amount=row["amount"],
                    currency=payment["currency"])


async def _take_back(conn: asyncpg.Connection, invoice: asyncpg.Record,
                     payment: asyncpg.Record, increase: int, known: Known) -> str:
    balance = await locks.credit_balance(conn, invoice["customer_id"], payment["currency"])
    # What reversals took is not there to take again.
    split = money.split_refund(
        increase, credit_from_payment=payment["credited"] - payment["refund_from_credit"]
        - payment["reversal_from_credit"],
        balance=balance, applied_from_payment=payment["applied"] - payment["refund_from_paid"]
        - payment["reversal_from_paid"])
    await conn.execute(
        """update payments set refund_from_credit = refund_from_credit + $2,
                  refund_from_paid = refund_from_paid + $3,
                  refund_unrecovered = refund_unrecovered + $4, updated_at = now()
           where id = $1""",
        payment["id"], split.from_credit, split.from_paid, split.unrecovered)
    if split.from_credit:
        await change_credit(conn, invoice["customer_id"], payment["currency"], -split.from_credit,
                            "taken_back", payment_id=payment["id"], invoice_id=invoice["id"],
                            known=known)
    if split.from_paid:
        await conn.execute("update invoices set amount_paid = amount_paid - $2 where id = $1",
                           invoice["id"], split.from_paid)
        await changed(conn, invoice, known=known)
    note = (f"refund +{increase}: {split.from_credit} from credit, {split.from_paid} from the "
            f"invoice")
    if split.unrecovered:
        note += f", {split.unrecovered} unrecovered (credit already spent)"
    return note


async def _give_back(conn: asyncpg.Connection, invoice: asyncpg.Record,
                     payment: asyncpg.Record, amount: int, known: Known) -> str:
    """A refund taken back under the rule did not happen: undo what it took."""
    back = money.split_give_back(
        amount, unrecovered=payment["refund_unrecovered"], from_paid=payment["refund_from_paid"],
        from_credit=payment["refund_from_credit"], room=remaining_of(invoice))
    await conn.execute(
        """update payments set refund_unrecovered = refund_unrecovered - $2,
                  refund_from_paid = refund_from_paid - $3 - $4,
                  refund_from_credit = refund_from_credit - $5,
                  applied = applied - $4, credited = credited + $4, updated_at = now()
           where id = $1""",
        payment["id"], back.unrecovered, back.to_invoice, back.overflow, back.to_credit)
    if back.to_invoice:
        await conn.execute("update invoices set amount_paid = amount_paid + $2 where id = $1",
                           invoice["id"], back.to_invoice)
        await changed(conn, invoice, known=known)
    if back.overflow + back.to_credit:
        await change_credit(conn, invoice["customer_id"], payment["currency"],
                            back.overflow + back.to_credit, "refund_fallback",
                            payment_id=payment["id"], invoice_id=invoice["id"], known=known)
    return (f"refund -{amount} did not happen: {back.to_invoice} back to the invoice, "
            f"{back.overflow + back.to_credit} to credit")


# --- refunds the merchant asks for ---------------------------------------------------------


def api_status(status: str) -> str:
    """pending (asked, or the processor is still on it), succeeded, or failed."""
    return "succeeded" if status == "succeeded" else "failed" if status in money.FAILED \
        else "pending"


def refund_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "payment_id": row["payment_id"], "amount": row["amount"],
            "status": api_status(row["status"]), "reason": row["reason"]}


async def refundable(conn: asyncpg.Connection, payment: asyncpg.Record) -> int:
    """What may still be refunded from a payment: what it received, less every refund
    made, confirmed or asked for (whatever its purpose), and what the bank took back."""
    if payment["status"] != "succeeded":
        return 0
    rows = await conn.fetch("select amount, status from refunds where payment_id = $1",
                            payment["id"])
    counted: int = sum(r["amount"] for r in rows if r["status"] in money.COUNTED)
    asked: int = sum(r["amount"] for r in rows if r["status"] == "requested")
    done: int = max(counted, payment["refunded"])
    received: int = payment["amount"]
    reversed_: int = payment["reversed"]
    return max(0, received - done - asked - reversed_)


@dataclass(frozen=True, slots=True)
class RefundRequest:
    id: str
    amount: int
    reason: str | None
    request: dict[str, Any]


async def request_refund(books: Books, payment_id: str, data: RefundRequest,
                         processors: Mapping[str, Processor],
                         ) -> tuple[dict[str, Any], bool]:
    """A merchant's refund of a payment; (the refund, created?). It moves the books once,
    when the processor confirms it (at once for a manual payment), by the refund rule.
    The payment's own processor (of `processors`, by `payments.processor`) makes it: it
    must be configured, and the amount one it can move (`Processor.unit_refused`)."""
    async with books.transaction() as conn:
        held = await locks.payment_with_invoice(conn, payment_id)
        if held is None:
            raise NotFound("payment", payment_id)
        # What may be refunded is read before the claim, so the claimed row is not in it.
        left = await refundable(conn, held.payment)
        # The id is claimed first, in one statement (as `payments.record_manual` does): of
        # calls racing with one id, one passes; the others, once it commits, answer what it
        # made (the same body) or 409. A refusal below rolls the claim back.
        if not await claim(conn, held, refund_id=data.id, amount=data.amount,
                           purpose="merchant", reason=data.reason,
                           request=json.dumps(data.request)):
            existing = await conn.fetchrow("select * from refunds where id = $1", data.id)
            check_same_request(existing, "payment_id", payment_id, data.request, "refund",
                               data.id)
            return refund_view(existing), False
        through = None if held.payment["source"] == "manual" \
            else processors.get(held.payment["processor"])
        if held.payment["source"] != "manual" and not (through and through.configured):
            raise Conflict("processor_not_configured",
                           "refunds of this payment need its processor configured")
        refused = through.unit_refused(data.amount, held.payment["currency"]) \
            if through is not None else None
        if refused:
            raise Invalid("amount_invalid", refused)
        if data.amount > left:
            raise Invalid("amount_exceeds_refundable",
                          f"{left} of this payment may still be refunded")
        await carry_out(conn, held, refund_id=data.id, amount=data.amount, purpose="merchant",
                        known=Known(books))  # the endpoints read once for the messages it owes
        row = await conn.fetchrow("select * from refunds where id = $1", data.id)
        return refund_view(row), True


async def get_refund(pool: asyncpg.Pool, refund_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("select * from refunds where id = $1", refund_id)
    if row is None:
        raise NotFound("refund", refund_id)
    return refund_view(row)
