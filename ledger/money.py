"""The money rules of CONTRACT §4 as pure functions over integers (minor units).

No I/O here: the SQL in `ledger.payments` and `ledger.invoices` reads rows,
asks these functions what to do, and writes the answer, so the rules are
tested on their own (including by property tests) and used in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

InvoiceStatus = Literal["void", "draft", "paid", "overdue", "partially_paid", "sent"]
OPEN_STATUSES: frozenset[str] = frozenset({"sent", "partially_paid", "overdue"})


def remaining(total: int, amount_paid: int, amount_credited: int) -> int:
    return max(0, total - amount_paid - amount_credited)


def invoice_status(*, voided: bool, sent: bool, total: int, amount_paid: int,
                   amount_credited: int, due_date: date | None, today: date) -> InvoiceStatus:
    """The precedence of §4: void, draft, paid, overdue, partially_paid, sent."""
    if voided:
        return "void"
    if not sent:
        return "draft"
    left = remaining(total, amount_paid, amount_credited)
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


# A refund's status only moves forward: asked, then what the processor says; a failed
# or canceled refund stays so (a succeeded one may still fail later).
REFUND_RANK = {"requested": 0, "requires_action": 1, "pending": 2, "succeeded": 3,
               "failed": 4, "canceled": 4}
COUNTED = frozenset({"requires_action", "pending", "succeeded"})
FAILED = frozenset({"failed", "canceled"})
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


@dataclass(frozen=True, slots=True)
class RefundTotals:
    refunded: int  # what went back to the customer from this payment
    by_rule: int  # of which the refund rule takes back from credit and the invoice


def refund_totals(reported: int, lines: list[RefundLine]) -> RefundTotals:
    """A payment's refunds from what the processor reported (`reported`, the largest
    cumulative amount_refunded seen) and the refunds known one by one.

    Each refund counts while confirmed and not failed; a cumulative figure may
    include refunds known only through it, less those known to have failed since.
    The same reports in any order give the same totals (§3).
    """
    counted = sum(line.amount for line in lines if line.status in COUNTED)
    failed = sum(line.amount for line in lines if line.status in FAILED and line.at_processor)
    refunded = max(counted, reported - failed)
    held = sum(line.amount for line in lines
               if line.status in COUNTED and line.purpose in NOT_BY_RULE)
    return RefundTotals(refunded, max(0, refunded - held))


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


def format_amount(amount: int, currency: str) -> str:
    """Minor units for a person: $1,234.50, €12.00, ¥500, 1.250 KWD."""
    symbol = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "CA$", "aud": "A$"}.get(
        currency.lower())
    digits = exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, fraction = divmod(abs(amount), 10**digits)
    text = f"{whole:,}" + (f".{fraction:0{digits}d}" if digits else "")
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency.upper()}"


# Stripe's zero-decimal currencies: amounts are in whole units.
ZERO_DECIMAL = frozenset({
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
})
# Three-decimal currencies: a minor unit is a thousandth.
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})
