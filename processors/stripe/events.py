"""Stripe events into payment facts (CONTRACT §3), and the handlers that apply them.

The payment id of a capture is the PaymentIntent id, so the Checkout Session
and the PaymentIntent events of one payment land on the same payment. Stripe
may deliver `payment_intent.succeeded` before `checkout.session.completed`,
and a refund before either: the ledger applies facts in any order.

`interpret` is pure (a payload in, facts out), so every shape Stripe sends is
tested without a database; `HANDLERS` is what the worker registers for
processor "stripe".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.errors import PermanentError
from ledger.facts import (
    Captured,
    CheckoutFinished,
    Cumulative,
    Fact,
    Ignored,
    PaymentFacts,
    PaymentFailed,
    Processing,
    RefundChanged,
    Refunded,
    RefundState,
    Reversed,
)
from ledger.inbox import Event, Outcome, Policy, Registration
from ledger.payments import apply_facts


def data_object(payload: Any) -> dict[str, Any]:
    """`data.object` of an event, or {} when the payload has none."""
    data = payload.get("data") if isinstance(payload, dict) else None
    obj = data.get("object") if isinstance(data, dict) else None
    return obj if isinstance(obj, dict) else {}


def _metadata(obj: dict[str, Any], key: str) -> str | None:
    metadata = obj.get("metadata")
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) and value else None


def invoice_reference(payload: Any) -> str | None:
    """The invoice settle put on the object (`metadata.invoice_id`), if any."""
    return _metadata(data_object(payload), "invoice_id")


def _id(value: Any) -> str | None:
    """An id field that may be expanded into its object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _amount(obj: dict[str, Any], field: str) -> int:
    value = obj.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PermanentError(f"{field} is not a non-negative integer")
    return value


def moment(value: Any) -> datetime | None:
    """A Stripe timestamp (whole seconds since the epoch), or None when there is none."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _currency(obj: dict[str, Any]) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or len(value) != 3:
        raise PermanentError("currency is missing")
    return value.lower()


# Stripe's payment method types in settle's words (`ledger.facts.PaymentFacts.method`).
METHODS = {
    "card": "card",
    "customer_balance": "bank_transfer",  # a bank transfer into the customer's balance
    "sepa_debit": "direct_debit",
    "bacs_debit": "direct_debit",
    "us_bank_account": "direct_debit",
    "au_becs_debit": "direct_debit",
    "acss_debit": "direct_debit",
}
# The types whose money arrives later: a session completed `unpaid` was paid by one.
ASYNCHRONOUS = frozenset(METHODS) - {"card"}


def _types(obj: dict[str, Any]) -> list[str]:
    types = obj.get("payment_method_types")
    return [t for t in types if isinstance(t, str)] if isinstance(types, list) else []


def _method(obj: dict[str, Any], *, asynchronous: bool = False) -> str | None:
    """How a Checkout Session or PaymentIntent was paid, in settle's words, from what the
    event carries: the charge's `payment_method_details.type` when it is expanded, else
    the one type offered. A payment completed `unpaid` (`asynchronous`) was made by the
    one asynchronous type offered, or, when the session names none (a list that says
    only `card`), by a bank transfer, Checkout's usual way of paying later. None when the
    event does not say (several types offered)."""
    charge = obj.get("latest_charge")
    details = charge.get("payment_method_details") if isinstance(charge, dict) else None
    used = details.get("type") if isinstance(details, dict) else None
    if isinstance(used, str):
        return METHODS.get(used)
    types = _types(obj)
    if asynchronous:
        types = [t for t in types if t in ASYNCHRONOUS] or ["customer_balance"]
    return METHODS.get(types[0]) if len(types) == 1 else None


def payment_method(obj: dict[str, Any], *, asynchronous: bool = False) -> str | None:
    """How a Checkout Session (its PaymentIntent expanded, when it is) or a PaymentIntent
    was paid, in settle's words: the PaymentIntent's say first (its charge's, or the one
    type it names), else the session's (`_method`). What reconcile is told."""
    intent = obj.get("payment_intent")
    if isinstance(intent, dict):
        said = _method(intent, asynchronous=asynchronous)
        if said is not None:
            return said
    return _method(obj, asynchronous=asynchronous)


def _session_payment(obj: dict[str, Any], *, asynchronous: bool = False) -> PaymentFacts:
    payment_id = _id(obj.get("payment_intent")) or _id(obj.get("id"))
    invoice_id = _metadata(obj, "invoice_id")
    if payment_id is None or invoice_id is None:
        raise PermanentError("checkout session without id")
    return PaymentFacts(payment_id, invoice_id, _amount(obj, "amount_total"), _currency(obj),
                        SOURCE, _metadata(obj, "payment_request_id"),
                        method=_method(obj, asynchronous=asynchronous))


def _finished(obj: dict[str, Any], payment: PaymentFacts | None, settled: bool) -> list[Fact]:
    session_id = _id(obj.get("id"))
    if session_id is None:
        return []
    return [CheckoutFinished(session_id, "complete" if payment else "expired",
                             payment.payment_id if payment else None, settled)]


def session_completed(obj: dict[str, Any]) -> list[Fact]:
    status = obj.get("payment_status")
    payment = _session_payment(obj, asynchronous=status == "unpaid")
    paid = status in ("paid", "no_payment_required")
    facts = _finished(obj, payment, settled=paid)
    if paid:
        return [*facts, Captured(payment)]
    if status == "unpaid":
        return [*facts, Processing(payment)]
    return [*facts, Ignored(f"payment_status {status!r}")]


def async_payment_succeeded(obj: dict[str, Any]) -> list[Fact]:
    payment = _session_payment(obj, asynchronous=True)
    return [*_finished(obj, payment, settled=True), Captured(payment)]


def async_payment_failed(obj: dict[str, Any]) -> list[Fact]:
    payment = _session_payment(obj, asynchronous=True)
    return [*_finished(obj, payment, settled=True), PaymentFailed(payment)]


def session_expired(obj: dict[str, Any]) -> list[Fact]:
    return _finished(obj, None, settled=True) or [Ignored("checkout session without id")]


def payment_intent_succeeded(obj: dict[str, Any]) -> list[Fact]:
    payment_id = _id(obj.get("id"))
    invoice_id = _metadata(obj, "invoice_id")
    if payment_id is None or invoice_id is None:
        raise PermanentError("payment intent without id")
    return [Captured(PaymentFacts(payment_id, invoice_id, _amount(obj, "amount_received"),
                                  _currency(obj), SOURCE, _metadata(obj, "payment_request_id"),
                                  method=_method(obj)))]


def _refund(obj: dict[str, Any], at: datetime | None) -> RefundState:
    """A refund as an event of `at` describes it."""
    refund_id = _id(obj.get("id"))
    said = obj.get("status")
    status = REFUND_STATUSES.get(said) if isinstance(said, str) else None
    if refund_id is None or status is None:
        raise PermanentError("refund without id or status")
    return RefundState(refund_id, _amount(obj, "amount"), status,
                       _metadata(obj, "settle_refund"), created=moment(obj.get("created")),
                       reported_at=at)


def charge_refunded(obj: dict[str, Any], at: datetime | None) -> list[Fact]:
    payment_id = _id(obj.get("payment_intent")) or _id(obj.get("id"))
    if payment_id is None:
        raise PermanentError("charge without payment_intent")
    # The charge lists its refunds when the event carries them (it may not: then the
    # cumulative amount_refunded is all there is).
    listed = obj.get("refunds")
    data = listed.get("data") if isinstance(listed, dict) else None
    refunds = tuple(_refund(r, at) for r in data if isinstance(r, dict)) \
        if isinstance(data, list) else ()
    # The figure is as of the event's moment: a later event may be lower (a refund failed
    # in between), an earlier one delivered late changes nothing.
    return [Refunded(payment_id, _metadata(obj, "invoice_id"),
                     Cumulative(_amount(obj, "amount_refunded"), at),
                     _currency(obj), obj.get("amount_captured") or obj.get("amount") or 0,
                     refunds, source=SOURCE)]


def refund_updated(obj: dict[str, Any], at: datetime | None) -> list[Fact]:
    """refund.created, refund.updated, refund.failed, charge.refund.updated: a refund."""
    payment_id = _id(obj.get("payment_intent"))
    if payment_id is None:
        raise PermanentError("refund without payment_intent")
    return [RefundChanged(payment_id, _metadata(obj, "invoice_id"), _currency(obj),
                          _refund(obj, at), source=SOURCE)]


def dispute_funds(obj: dict[str, Any], given_back: bool) -> list[Fact]:
    """charge.dispute.funds_withdrawn (the bank took the disputed amount back) and
    charge.dispute.funds_reinstated (the dispute was won: given back): a reversal of the
    payment, by the dispute's id, tied to the payment by payment_intent."""
    dispute_id = _id(obj.get("id"))
    payment_id = _id(obj.get("payment_intent"))
    if dispute_id is None or payment_id is None:
        raise PermanentError("dispute without id or payment_intent")
    amount = _amount(obj, "amount")
    if amount == 0:
        return [Ignored("dispute of no amount")]
    return [Reversed(payment_id, _metadata(obj, "invoice_id"), _currency(obj), dispute_id,
                     amount, given_back=given_back, source=SOURCE)]


SOURCE = "stripe"
# Stripe's refund statuses in settle's words (`ledger.money.REFUND_RANK`): one waiting on
# the customer (requires_action) is still the processor's to finish, and a canceled one
# did not happen, as a failed one did not.
REFUND_STATUSES = {"pending": "pending", "requires_action": "pending",
                   "succeeded": "succeeded", "failed": "failed", "canceled": "failed"}


def refund_status(status: str | None) -> str:
    """A refund Stripe answers with, in settle's words: one it made and whose status it
    did not say (or said in a word newer than this adapter) is pending."""
    return REFUND_STATUSES.get(status or "", "pending")

# An event's object and the event's moment (`created`) in, facts out.
Interpreter = Callable[[dict[str, Any], datetime | None], list[Fact]]


def _untimed(read: Callable[[dict[str, Any]], list[Fact]]) -> Interpreter:
    """An event whose facts do not depend on when it was sent (a capture is a capture)."""
    return lambda obj, at: read(obj)


# Event type -> (interpreter, whether the event must name its invoice). A charge may
# not carry the PaymentIntent's metadata: a known payment is enough.
INTERPRETERS: dict[str, tuple[Interpreter, bool]] = {
    "checkout.session.completed": (_untimed(session_completed), True),
    "checkout.session.async_payment_succeeded": (_untimed(async_payment_succeeded), True),
    "checkout.session.async_payment_failed": (_untimed(async_payment_failed), True),
    "checkout.session.expired": (_untimed(session_expired), True),
    "payment_intent.succeeded": (_untimed(payment_intent_succeeded), True),
    "charge.refunded": (charge_refunded, False),
    # A refund is tied to its payment by payment_intent: it need not name the invoice.
    "refund.created": (refund_updated, False),
    "refund.updated": (refund_updated, False),
    "refund.failed": (refund_updated, False),
    "charge.refund.updated": (refund_updated, False),
    # A dispute names its PaymentIntent, never settle's metadata.
    "charge.dispute.funds_withdrawn": (_untimed(lambda obj: dispute_funds(obj, False)), False),
    "charge.dispute.funds_reinstated": (_untimed(lambda obj: dispute_funds(obj, True)), False),
}


def interpret(event_type: str, payload: Any) -> list[Fact]:
    """The facts a Stripe event states (raises PermanentError for a malformed one)."""
    entry = INTERPRETERS.get(event_type)
    if entry is None:
        return [Ignored(f"settle does not act on {event_type}")]
    created = payload.get("created") if isinstance(payload, dict) else None
    return entry[0](data_object(payload), moment(created))


def _handler(event_type: str) -> Callable[[asyncpg.Connection, Event, Policy],
                                          Any]:
    async def handle(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
        return await apply_facts(conn, interpret(event_type, event.payload), policy,
                                 known=event.known)

    return handle


HANDLERS: dict[str, Registration] = {
    event_type: Registration(_handler(event_type), needs_invoice)
    for event_type, (_, needs_invoice) in INTERPRETERS.items()
}
