"""Words a person reads for settle's values: how a payment was made, how one may be made
(the ways offered on the pages), an invoice's status.

One place for them, so the invoice page, its PDF and the mails say the same thing.
"""

from __future__ import annotations

# A payment's `method` (settle's words: what the processor says, translated by its adapter,
# or what the merchant recorded) as a person says it.
METHODS = {
    "card": "Card",
    "card_offline": "Card",
    "bank_transfer": "Bank transfer",
    "direct_debit": "Direct Debit",
    "cash": "Cash",
    "check": "Cheque",
    "other": "Other",
}

STATUSES = {"sent": "Open", "partially_paid": "Partially paid", "overdue": "Overdue",
            "paid": "Paid", "void": "Void", "draft": "Not issued yet",
            "uncollectible": "Uncollectible"}


def how_paid(source: str, method: str | None) -> str:
    """How a payment was made: `Card`, `Bank transfer`, `Direct Debit`, `Cash`, `Cheque`;
    a processor's payment whose method is not known is `Paid online`."""
    if method in METHODS:
        return METHODS[method]
    return "Other" if source == "manual" else "Paid online"


def way_label(way: str) -> str:
    """A way to pay offered on the pages (`card`, `direct_debit`: a processor's `way`) as the
    button says it: `Card`, `Direct Debit`; the same words as a payment made that way."""
    return METHODS.get(way, way.replace("_", " ").capitalize())


def status_label(status: str) -> str:
    return STATUSES.get(status, status)
