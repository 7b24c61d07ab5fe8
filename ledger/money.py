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


def refund_increase(*, reported: int, refunded: int, excess_refunded: int,
                    absorbed: int) -> tuple[int, int]:
    """(new cumulative refunded, increase to take back) for a reported amount_refunded.

    `reported` is cumulative, so an older event never lowers `refunded`. The
    part that settle itself refunded as excess (`excess_refunded`, policy
    `refund`) took nothing from the books and is not taken back again;
    `absorbed` is what earlier refund increases already took back.
    """
    new_refunded = max(refunded, reported)
    external = max(0, new_refunded - excess_refunded)
    return new_refunded, max(0, external - absorbed)


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
