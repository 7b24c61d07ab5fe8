"""Stripe events that move money (CONTRACT §3), read into `PaymentFacts`.

The payment id of a capture is the PaymentIntent id, so the Checkout Session
and the PaymentIntent events of one payment land on the same row. Stripe may
deliver `payment_intent.succeeded` before `checkout.session.completed`, and a
refund before either: `ledger.payments` is written for any order.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from ledger import payments
from ledger.checkout import session_finished
from ledger.inbox import Event, Outcome, PermanentError, Policy, handles


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


def _currency(obj: dict[str, Any]) -> str:
    value = obj.get("currency")
    if not isinstance(value, str) or len(value) != 3:
        raise PermanentError("currency is missing")
    return value.lower()


def _request_id(obj: dict[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    value = metadata.get("payment_request_id") if isinstance(metadata, dict) else None
    return value if isinstance(value, str) and value else None


def session_facts(event: Event) -> payments.PaymentFacts:
    obj = event.object
    payment_id = _id(obj.get("payment_intent")) or _id(obj.get("id"))
    if payment_id is None:
        raise PermanentError("checkout session without id")
    assert event.invoice_id is not None  # the registry only calls us with one
    return payments.PaymentFacts(payment_id, event.invoice_id, _amount(obj, "amount_total"),
                                 _currency(obj), _request_id(obj))


@handles("checkout.session.completed")
async def session_completed(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
    status = event.object.get("payment_status")
    facts = session_facts(event)
    session_id = _id(event.object.get("id"))
    if session_id:
        await session_finished(conn, session_id, "complete")
    if status in ("paid", "no_payment_required"):
        return Outcome("processed", await payments.capture(conn, facts, policy.overpayment))
    if status == "unpaid":
        return Outcome("processed", await payments.processing(conn, facts))
    return Outcome("ignored", f"payment_status {status!r}")


@handles("checkout.session.async_payment_succeeded")
async def async_payment_succeeded(conn: asyncpg.Connection, event: Event,
                                  policy: Policy) -> Outcome:
    return Outcome("processed",
                   await payments.capture(conn, session_facts(event), policy.overpayment))


@handles("checkout.session.async_payment_failed")
async def async_payment_failed(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
    return Outcome("processed", await payments.failed(conn, session_facts(event)))


@handles("payment_intent.succeeded")
async def payment_intent_succeeded(conn: asyncpg.Connection, event: Event,
                                   policy: Policy) -> Outcome:
    obj = event.object
    payment_id = _id(obj.get("id"))
    if payment_id is None:
        raise PermanentError("payment intent without id")
    assert event.invoice_id is not None
    facts = payments.PaymentFacts(payment_id, event.invoice_id, _amount(obj, "amount_received"),
                                  _currency(obj), _request_id(obj))
    return Outcome("processed", await payments.capture(conn, facts, policy.overpayment))


# A charge may not carry the PaymentIntent's metadata; a known payment is enough.
@handles("charge.refunded", needs_invoice=False)
async def charge_refunded(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
    obj = event.object
    payment_id = _id(obj.get("payment_intent")) or _id(obj.get("id"))
    if payment_id is None:
        raise PermanentError("charge without payment_intent")
    note = await payments.refund(conn, payment_id, _amount(obj, "amount_refunded"),
                                 _currency(obj), event.invoice_id,
                                 obj.get("amount_captured") or obj.get("amount") or 0)
    if note is None:
        return Outcome("ignored", "no metadata.invoice_id and no known payment")
    return Outcome("processed", note)
