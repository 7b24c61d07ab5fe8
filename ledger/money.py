"""The money rules of CONTRACT §4 as pure functions over integers (minor units).

No I/O here: the SQL in `ledger.payments` and `ledger.invoices` reads rows,
asks these functions what to do, and writes the answer, so the rules are
tested on their own (including by property tests) and used in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

InvoiceStatus = Literal["void", "draft", "paid", "overdue", "partially_paid", "sent"]
OPEN_STATUSES: frozenset[str] = frozenset({"sent", "partially_paid", "overdue"})


def remaining(total: int, amount_paid: int, amount_credited: int,
              amount_credit_noted: int = 0) -> int:
    """amount_remaining = total - amount_paid - amount_credited - amount_credit_noted,
    never below 0 (§4)."""
    return max(0, total - amount_paid - amount_credited - amount_credit_noted)


def invoice_status(*, voided: bool, sent: bool, total: int, amount_paid: int,
                   amount_credited: int, due_date: date | None, today: date,
                   amount_credit_noted: int = 0) -> InvoiceStatus:
    """The precedence of §4: void, draft, paid, overdue, partially_paid, sent."""
    if voided:
        return "void"
    if not sent:
        return "draft"
    left = remaining(total, amount_paid, amount_credited, amount_credit_noted)
    if left == 0:
        return "paid"
    if due_date is not None and today > due_date:
        return "overdue"
    if amount_paid + amount_credited > 0:
        return "partially_paid"
    return "sent"


@dataclass(frozen=True, slots=True)
class CaptureSplit:
    applied: int  # goes to the invoice's amount_paid
    excess: int  # an overpayment: credited, or refunded, by policy


def split_capture(amount: int, left: int) -> CaptureSplit:
    """A capture applies min(amount, remaining); the rest is excess (§4)."""
    if amount < 0 or left < 0:
        raise ValueError("amounts are never negative")
    applied = min(amount, left)
    return CaptureSplit(applied, amount - applied)


@dataclass(frozen=True, slots=True)
class RefundSplit:
    from_credit: int  # taken back from the customer's credit balance
    from_paid: int  # taken off the invoice's amount_paid
    unrecovered: int  # already spent as credit elsewhere: recorded, cannot be taken back


# A refund's status, in settle's words: `requested` (settle asked, no answer yet),
# `pending` (the processor accepted it, or is still on it), `succeeded`, `failed` (it did
# not happen). Each processor translates its own statuses into these. A status only moves
# forward: asked, then what the processor says; a failed refund stays so (a succeeded one
# may still fail later).
REFUND_RANK = {"requested": 0, "pending": 1, "succeeded": 2, "failed": 3}
COUNTED = frozenset({"pending", "succeeded"})
FAILED = frozenset({"failed"})
# Refunds that take nothing back under the refund rule: settle's own refund of an
# overpayment, and a credit note's refund (it belongs to the credit note).
NOT_BY_RULE = frozenset({"excess", "credit_note"})


def later_status(current: str, reported: str) -> str:
    """The status after a report, whatever order reports arrive in."""
    return reported if REFUND_RANK[reported] > REFUND_RANK[current] else current


@dataclass(frozen=True, slots=True)
class RefundLine:
    amount: int
    status: str
    purpose: str  # external, merchant, excess, credit_note
    at_processor: bool  # the processor knows it (it has the processor's id)
    # On the processor's clock, when known: when it made the refund, and the earliest
    # report that it had failed.
    made_at: datetime | None = None
    failed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RefundTotals:
    refunded: int  # what went back to the customer from this payment
    by_rule: int  # of which the refund rule takes back from credit and the invoice


def in_report(line: RefundLine, reported_at: datetime | None) -> bool:
    """Whether a cumulative figure the processor reported at `reported_at` may hold this
    refund: the processor knows it, and its times do not prove it absent (made after the
    report, or reported failed before it). Without times, it may."""
    if not line.at_processor:
        return False
    if reported_at is None:
        return True
    if line.made_at is not None and line.made_at > reported_at:
        return False
    return line.failed_at is None or line.failed_at >= reported_at


def refund_totals(reported: int, lines: list[RefundLine], *,
                  reported_at: datetime | None = None) -> RefundTotals:
    """A payment's refunds from the processor's newest cumulative report (`reported`,
    its cumulative refunded total as of `reported_at`) and the refunds known one by one.

    A processor's cumulative figure (Stripe's amount_refunded) is the sum of the
    payment's refunds not failed at that moment: it goes down when a refund fails,
    and a report may list no refund at all. So the largest figure ever seen is not the truth (500
    reported, that refund failed, 300 reported for a new one: 300, not 0); the
    newest is, as of its moment. "An older event never lowers it" is read that
    way: a report older than the one kept changes nothing (`ledger.refunds`
    keeps the newest by the processor's event time, the larger on a tie), a
    newer one may lower it.

    Each known refund counts while confirmed and not failed. Of the newest
    report, the known refunds that may be in it explain their part; a refund is
    taken to be in it unless the processor's times prove otherwise, so an
    ambiguity (a failure in the very second of a report) never invents a refund
    nobody listed: at worst one is counted when the next report comes. What the
    report holds beyond that was made without settle hearing of it one by one:
    first settle's own refunds of an overpayment or a credit note asked for and
    not answered yet (the webhook can beat the answer), which belong to their
    purpose and are counted once confirmed; the rest was made elsewhere (the
    processor's dashboard) and falls under the refund rule. A merchant's refund
    not answered yet needs no such care: it is under the rule either way, and
    its answer only moves its part from "elsewhere" to "known".
    The same reports in any order give the same totals (§3).
    """
    counted = sum(line.amount for line in lines if line.status in COUNTED)
    held = sum(line.amount for line in lines
               if line.status in COUNTED and line.purpose in NOT_BY_RULE)
    explained = sum(line.amount for line in lines if in_report(line, reported_at))
    awaited = sum(line.amount for line in lines
                  if line.status == "requested" and line.purpose in NOT_BY_RULE)
    elsewhere = max(0, reported - explained - awaited)
    refunded = counted + elsewhere
    return RefundTotals(refunded, refunded - held)


@dataclass(frozen=True, slots=True)
class GiveBack:
    unrecovered: int  # never taken back: nothing moves
    to_invoice: int  # back to the invoice's amount_paid
    overflow: int  # was taken from the invoice, which has no room now: credited
    to_credit: int  # was taken from the credit balance: credited again


def split_give_back(amount: int, *, unrecovered: int, from_paid: int, from_credit: int,
                    room: int) -> GiveBack:
    """A refund that did not happen gives back what it took, last taken first
    undone: what it could not take, then the invoice (as far as the invoice has
    room; the rest as credit), then the credit balance."""
    if min(amount, unrecovered, from_paid, from_credit, room) < 0:
        raise ValueError("amounts are never negative")
    u = min(amount, unrecovered)
    p = min(amount - u, from_paid)
    c = min(amount - u - p, from_credit)
    to_invoice = min(p, room)
    return GiveBack(u, to_invoice, p - to_invoice, c)


def split_refund(increase: int, *, credit_from_payment: int, balance: int,
                 applied_from_payment: int) -> RefundSplit:
    """A refund increase first takes back what the payment credited and is still
    on the balance, then reduces what the payment applied to the invoice (§4)."""
    if min(increase, credit_from_payment, balance, applied_from_payment) < 0:
        raise ValueError("amounts are never negative")
    from_credit = min(increase, credit_from_payment, balance)
    from_paid = min(increase - from_credit, applied_from_payment)
    return RefundSplit(from_credit, from_paid, increase - from_credit - from_paid)


@dataclass(frozen=True, slots=True)
class CreditNoteSplit:
    pre_payment: int  # taken off what is owed
    post_payment: int  # given back: credited, or refunded


def split_credit_note(amount: int, *, left: int, returnable: int) -> CreditNoteSplit | None:
    """A credit note takes min(amount, remaining) off what is owed; the rest goes back
    to the customer, never more than what was paid or credited and not yet given back
    by earlier credit notes (`returnable`). None when it asks for more (§4)."""
    if amount <= 0 or left < 0:
        raise ValueError("a credit note is positive")
    pre = min(amount, left)
    if amount - pre > returnable:
        return None
    return CreditNoteSplit(pre, amount - pre)


def credit_returned(credited: int, *, applied: int, returned: int) -> int:
    """Of what a credit note gives back to the customer's balance (`credited`), the part
    taken out of the credit applied to its invoice (`applied`), less what earlier credit
    notes already returned from it (`returned`): that credit first, so that voiding the
    invoice never gives it back a second time (§4)."""
    if min(credited, applied, returned) < 0:
        raise ValueError("amounts are never negative")
    return min(credited, max(0, applied - returned))


def credit_back_on_void(applied: int, returned_by_notes: int) -> int:
    """What voiding an invoice gives back to the customer's balance: the credit applied to
    it less what its credit notes already returned from that credit (§4)."""
    if min(applied, returned_by_notes) < 0:
        raise ValueError("amounts are never negative")
    return max(0, applied - returned_by_notes)


def still_applied(*, applied: int, refund_from_paid: int, amount: int, refunded: int,
                  reversal_from_paid: int = 0, reversed: int = 0) -> int:
    """What of a captured payment still counts on its invoice, net of refunds and
    reversals: what it applied less what they took back from the invoice, and never more
    than what it received less every refund of it (a credit note's refund too) and what
    the bank took back. Money still applied blocks voiding the invoice (§4)."""
    return max(0, min(applied - refund_from_paid - reversal_from_paid,
                      amount - refunded - reversed))


def credit_to_apply(requested: int | None, balance: int, left: int) -> int:
    """apply-credit applies min(amount, credit balance, remaining)."""
    if requested is not None and requested <= 0:
        raise ValueError("a requested amount is positive")
    wanted = left if requested is None else requested
    return max(0, min(wanted, balance, left))


def exponent(currency: str) -> int:
    """Digits after the decimal point of a currency's minor unit (ISO 4217)."""
    code = currency.lower()
    return 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2


class AmountRefused(ValueError):
    """Why a typed amount is not one: `code` names it (not_a_number, too_many_decimals,
    not_positive, too_large), for a message in the person's words."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# Below what bigint and every sum of amounts can hold, as the API's own limit.
LARGEST = 2**53 - 1


def minor_units(value: Decimal, currency: str) -> int:
    """Minor units of an amount a person wrote (read from their locale's way of writing
    numbers by `present.formats.parse_amount`), by the currency's exponent (§6): `25.50`
    USD is 2550, `1.250` KWD is 1250, `500` JPY is 500. Digits past the exponent are
    refused unless they are zeros (`500.00` yen is 500 yen)."""
    if not value.is_finite():
        raise AmountRefused("not_a_number")
    if value.is_signed() or value.is_zero():
        raise AmountRefused("not_positive")
    if value > LARGEST:
        raise AmountRefused("too_large")
    # Exactly, whatever the decimal context's precision: trailing zeros are no decimals.
    _, figures, exp = value.as_tuple()
    place = int(exp)  # a finite number's exponent is a number
    digits = exponent(currency)
    while place < -digits and figures[-1] == 0:
        figures, place = figures[:-1], place + 1
    if place < -digits:
        raise AmountRefused("too_many_decimals")
    amount = int("".join(map(str, figures))) * int(10 ** (place + digits))
    if amount > LARGEST:
        raise AmountRefused("too_large")
    return amount


PartialRefusal = Literal["below_minimum", "above_remaining"]


def partial_refusal(amount: int, *, left: int, minimum: int) -> PartialRefusal | None:
    """A customer's own amount is at least `minimum` (or what remains, if less) and at
    most what remains (§6); why not, or None."""
    if amount > left:
        return "above_remaining"
    if amount < min(minimum, left):
        return "below_minimum"
    return None


def partial_floor(left: int, minimum: int) -> int:
    """The least a customer may choose to pay now."""
    return max(1, min(minimum, left))


# Stripe's zero-decimal currencies: amounts are in whole units.
ZERO_DECIMAL = frozenset({
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
})
# Three-decimal currencies: a minor unit is a thousandth.
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
