"""Stripe-shaped objects and events, built from Stripe's own fixtures, signed as Stripe signs.

The sandbox processor sends these; the tests build the events they deliver with them.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any

from processors.stripe.signature import sign

# A copy of ../shared/stripe-fixtures/objects.json (Stripe's own OpenAPI fixtures),
# kept in the repository so a clone works on its own.
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe_objects.json"
# The signing secret the test suite configures; the sandbox is given its own.
SECRET = "whsec_test_primary"


@cache
def _objects() -> dict[str, Any]:
    return json.loads(FIXTURES.read_text())  # type: ignore[no-any-return]


def stripe_object(kind: str, **overrides: Any) -> dict[str, Any]:
    obj: dict[str, Any] = copy.deepcopy(_objects()[kind])
    obj.update(overrides)
    return obj


def event(event_type: str, obj: dict[str, Any], *, event_id: str | None = None,
          created: int | None = None) -> dict[str, Any]:
    """An event as Stripe sends it; `created` (Stripe's clock, whole seconds) is now unless
    a story says when it happened."""
    return stripe_object(
        "event",
        id=event_id or f"evt_{uuid.uuid4().hex[:24]}",
        type=event_type,
        created=int(time.time()) if created is None else created,
        data={"object": obj},
    )


def signed(body: bytes | dict[str, Any], secret: str = SECRET,
           timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    header = sign(raw, secret, int(time.time()) if timestamp is None else timestamp)
    return raw, {"Stripe-Signature": header, "Content-Type": "application/json"}


# --- the events settle acts on, as Stripe shapes them ----------------------------------

def _metadata(invoice_id: str | None, request_id: str | None) -> dict[str, str]:
    metadata = {}
    if invoice_id is not None:
        metadata["invoice_id"] = invoice_id
    if request_id is not None:
        metadata["payment_request_id"] = request_id
    return metadata


def session_completed(invoice_id: str | None, amount: int, payment_intent: str, *,
                      payment_status: str = "paid", currency: str = "usd",
                      request_id: str | None = None,
                      event_type: str = "checkout.session.completed",
                      method_types: list[str] | None = None) -> dict[str, Any]:
    """`method_types`: what the session offered (its `payment_method_types`); a card-only
    session unless it was paid later (`unpaid`), then card or a bank transfer."""
    if method_types is None:
        method_types = ["card"] if payment_status == "paid" else ["card", "customer_balance"]
    session = stripe_object(
        "checkout.session", id=f"cs_test_{uuid.uuid4().hex[:24]}", amount_total=amount,
        amount_subtotal=amount, currency=currency, payment_intent=payment_intent,
        payment_status=payment_status, status="complete", mode="payment",
        metadata=_metadata(invoice_id, request_id), payment_method_types=method_types,
    )
    return event(event_type, session)


def payment_intent_succeeded(invoice_id: str | None, amount: int, payment_intent: str, *,
                             currency: str = "usd",
                             request_id: str | None = None) -> dict[str, Any]:
    intent = stripe_object(
        "payment_intent", id=payment_intent, amount=amount, amount_received=amount,
        currency=currency, status="succeeded", metadata=_metadata(invoice_id, request_id),
    )
    return event("payment_intent.succeeded", intent)


def charge_refunded(payment_intent: str, amount: int, amount_refunded: int, *,
                    invoice_id: str | None, currency: str = "usd",
                    refunds: list[dict[str, Any]] | None = None,
                    created: int | None = None) -> dict[str, Any]:
    """Stripe copies the PaymentIntent's metadata onto its charge when it is confirmed.
    `refunds` are the refund objects the charge lists (none: an event that lists none)."""
    charge = stripe_object(
        "charge", id=f"ch_{uuid.uuid4().hex[:24]}", amount=amount, amount_captured=amount,
        amount_refunded=amount_refunded, refunded=amount_refunded >= amount, currency=currency,
        payment_intent=payment_intent, metadata=_metadata(invoice_id, None),
        refunds={"object": "list", "data": refunds or [], "has_more": False},
    )
    return event("charge.refunded", charge, created=created)


def refund_object(refund_id: str, payment_intent: str, amount: int, status: str, *,
                  currency: str = "usd", settle_refund: str | None = None,
                  created: int | None = None) -> dict[str, Any]:
    """A refund; `created` is when Stripe made it (now unless a story says when)."""
    metadata = {"settle_refund": settle_refund} if settle_refund else {}
    return stripe_object("refund", id=refund_id, payment_intent=payment_intent, amount=amount,
                         status=status, currency=currency, metadata=metadata,
                         created=int(time.time()) if created is None else created)


def dispute_event(event_type: str, payment_intent: str, amount: int, *,
                  dispute_id: str | None = None, currency: str = "usd",
                  status: str = "needs_response") -> dict[str, Any]:
    """charge.dispute.funds_withdrawn or charge.dispute.funds_reinstated, shaped as
    Stripe's Dispute object (Stripe's fixtures hold none)."""
    dispute = {
        "id": dispute_id or f"dp_{uuid.uuid4().hex[:24]}", "object": "dispute",
        "amount": amount, "currency": currency, "charge": f"ch_{uuid.uuid4().hex[:24]}",
        "payment_intent": payment_intent, "reason": "fraudulent", "status": status,
        "is_charge_refundable": False, "livemode": False, "metadata": {},
        "created": int(time.time()), "balance_transactions": [],
        "evidence": {}, "evidence_details": {"has_evidence": False},
    }
    return event(event_type, dispute)


def refund_event(event_type: str, refund: dict[str, Any], *,
                 created: int | None = None) -> dict[str, Any]:
    """refund.created, refund.updated, refund.failed or charge.refund.updated."""
    return event(event_type, dict(refund), created=created)
