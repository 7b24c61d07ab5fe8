"""GoCardless's batches of thin events into payment facts (CONTRACT §3a), and their handlers.

A delivery is `{"events": [...]}`, up to 250 events, each naming a resource by id
(`links.payment`, `links.refund`, `links.billing_request`) and saying what happened to
it (`action`), never how much: the event job asks GoCardless for the resource first
(`GoCardlessProcessor.fetch`, no transaction open), and the amount and currency applied
are the fetched resource's. The type settle records is `"<resource_type>.<action>"`
(`payments.confirmed`).

Events arrive in any order and any number of times; what an event means is decided by
its action and what GoCardless says of the resource now, never by what settle heard
before:

- `confirmed` is a capture. `late_failure_settled`, `charged_back` and
  `chargeback_cancelled` happen only to a payment that was confirmed, so each is that
  capture too (applied once, whichever comes first) and then its reversal, or its
  undoing; a reversal is keyed by the payment and its kind (`<PM>:late_failure`,
  `<PM>:chargeback`), so `failed` and `late_failure_settled` of one payment reverse once.
- `failed` is ambiguous: before confirmation nothing was received, after it the bank
  took the money back (a late failure). The fetch asks GoCardless whether the payment
  was ever confirmed (its `confirmed` event), so the answer does not depend on which
  webhook came first.
- A refund's status is the fetched refund's (a `created` notice read after the refund
  was paid says paid), in settle's words.

`interpret` is pure (a notice and its resource in, facts out); `HANDLERS` is what the
worker registers for processor "gocardless".
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from core import json_body
from core.errors import PermanentError
from core.processor import BadEvent, InboundEvent
from ledger.facts import (
    Captured,
    CheckoutFinished,
    Fact,
    Ignored,
    PaymentFacts,
    PaymentFailed,
    Processing,
    RefundChanged,
    RefundState,
    Reversed,
)
from ledger.inbox import Event, Outcome, Policy, Registration
from ledger.payments import apply_facts

SOURCE = "gocardless"
METHOD = "direct_debit"
# GoCardless sends at most this many events in one delivery.
MAX_BATCH = 250
MAX_FIELD_LENGTH = 255

# --- reading a delivery ------------------------------------------------------------------

def _metadata_invoice(event: dict[str, Any]) -> str | None:
    """The invoice an event names: settle puts `invoice_id` on every payment and billing
    request it makes; GoCardless copies a resource's metadata onto its events as
    `resource_metadata` (the event's own `metadata` is read too). None: the fetched
    resource tells later."""
    for field in ("metadata", "resource_metadata"):
        metadata = event.get(field)
        value = metadata.get("invoice_id") if isinstance(metadata, dict) else None
        if isinstance(value, str) and 0 < len(value) <= MAX_FIELD_LENGTH:
            return value
    return None


def read_batch(body: bytes) -> list[InboundEvent]:
    """A delivery's events, in order; BadEvent unless every one has string `id`,
    `resource_type` and `action` (then nothing of it is recorded)."""
    try:
        delivery = json_body.read(body)
    except (ValueError, RecursionError):
        raise BadEvent("body is not UTF-8 JSON") from None
    events = delivery.get("events") if isinstance(delivery, dict) else None
    if not isinstance(events, list):
        raise BadEvent("body is not a JSON object with an events list")
    if not events:
        raise BadEvent("the events list is empty")
    if len(events) > MAX_BATCH:
        raise BadEvent(f"more than {MAX_BATCH} events in one delivery")
    escaped = json_body.may_be_unstorable(body)
    parsed = []
    for n, item in enumerate(events):
        if not isinstance(item, dict):
            raise BadEvent(f"event {n} is not an object")
        for name in ("id", "resource_type", "action"):
            value = item.get(name)
            if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD_LENGTH:
                raise BadEvent(f"event {n} has no valid {name}")
        if escaped and not json_body.storable(item):
            # Decided before the intake: PostgreSQL would refuse the row, and with it the
            # whole statement (every event of this and concurrent deliveries).
            raise BadEvent(f"event {n} holds \\u0000 or a lone surrogate")
        parsed.append(InboundEvent(item["id"], f"{item['resource_type']}.{item['action']}",
                                   _metadata_invoice(item), _dumps(item)))
    return parsed


def _dumps(item: dict[str, Any]) -> str:
    """One event as the text its row stores."""
    try:
        return orjson.dumps(item).decode()
    except TypeError:  # an integer past 64 bits: the standard library writes it
        return json.dumps(item)


# --- what a notice and its resource say ---------------------------------------------------


def link(payload: Mapping[str, Any], name: str) -> str:
    """The id an event names in `links` (raises PermanentError when it names none)."""
    links = payload.get("links")
    value = links.get(name) if isinstance(links, dict) else None
    if not isinstance(value, str) or not value:
        raise PermanentError(f"event names no {name}")
    return value


def moment(value: Any) -> datetime | None:
    """A GoCardless timestamp (ISO 8601, `2014-01-01T12:00:00.000Z`), or None."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _amount(resource: Mapping[str, Any], field: str = "amount") -> int:
    value = resource.get(field)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PermanentError(f"{field} is not a non-negative integer")
    return value


def _currency(resource: Mapping[str, Any]) -> str:
    value = resource.get("currency")
    if not isinstance(value, str) or len(value) != 3:
        raise PermanentError("currency is missing")
    return value.lower()  # upper case at GoCardless, lower case in settle


def _meta(resource: Mapping[str, Any], key: str) -> str | None:
    metadata = resource.get("metadata")
    value = metadata.get(key) if isinstance(metadata, dict) else None
    return value if isinstance(value, str) and value else None


def _id(resource: Mapping[str, Any]) -> str:
    value = resource.get("id")
    if not isinstance(value, str) or not value:
        raise PermanentError("resource without id")
    return value


def payment_facts(payment: Mapping[str, Any]) -> PaymentFacts | None:
    """A GoCardless payment as settle knows a payment: its invoice is in its metadata.
    None for a payment settle did not make (the merchant's others at GoCardless)."""
    invoice_id = _meta(payment, "invoice_id")
    if invoice_id is None:
        return None
    return PaymentFacts(_id(payment), invoice_id, _amount(payment), _currency(payment),
                        SOURCE, _meta(payment, "payment_request_id"), method=METHOD)


# GoCardless's refund statuses (and a notice's action, for a status newer than this
# adapter) in settle's words (`ledger.money.REFUND_RANK`).
REFUND_STATUSES = {
    "created": "pending", "pending_submission": "pending", "submitted": "pending",
    "paid": "succeeded",
    "failed": "failed", "cancelled": "failed", "bounced": "failed", "funds_returned": "failed",
}
# GoCardless's payment statuses in settle's words (what reconcile is told).
PAYMENT_STATUSES = {
    "pending_customer_approval": "processing", "pending_submission": "processing",
    "submitted": "processing",
    "confirmed": "succeeded", "paid_out": "succeeded",
    # A payment charged back or failed late was received and taken back: nothing is kept.
    "failed": "failed", "cancelled": "failed", "customer_approval_denied": "failed",
    "charged_back": "failed",
}
# Billing request statuses as a checkout session's (`core.processor.SessionState.status`).
CHECKOUT_STATUSES = {"fulfilled": "complete", "cancelled": "expired"}


def refund_status(status: Any, action: str | None = None) -> str:
    """A refund GoCardless made, in settle's words: one whose status this adapter does not
    know yet is as its notice says, else pending (GoCardless has it)."""
    said = REFUND_STATUSES.get(status) if isinstance(status, str) else None
    return said or REFUND_STATUSES.get(action or "", "pending")


def refund_state(refund: Mapping[str, Any], *, action: str | None = None,
                 at: datetime | None = None) -> RefundState:
    return RefundState(_id(refund), _amount(refund), refund_status(refund.get("status"), action),
                       _meta(refund, "settle_refund"), created=moment(refund.get("created_at")),
                       reported_at=at)


def _reversal(payment: PaymentFacts, kind: str, *, given_back: bool = False) -> Reversed:
    return Reversed(payment.payment_id, payment.invoice_id, payment.currency,
                    f"{payment.payment_id}:{kind}", payment.amount, given_back=given_back,
                    source=SOURCE)


def _payment(action: str, resource: Mapping[str, Any]) -> list[Fact]:
    payment = payment_facts(resource.get("payments") or {})
    if payment is None:
        return [Ignored("the payment names no invoice (metadata.invoice_id)")]
    match action:
        case "submitted":
            return [Processing(payment)]
        case "confirmed":
            return [Captured(payment)]
        case "failed" if resource.get("confirmed_before"):
            # A late failure: it was captured (once, whichever notice came first), then the
            # bank took it back.
            return [Captured(payment), _reversal(payment, "late_failure")]
        case "failed" | "cancelled" | "customer_approval_denied":
            return [PaymentFailed(payment)]
        case "late_failure_settled":
            return [Captured(payment), _reversal(payment, "late_failure")]
        case "charged_back":
            return [Captured(payment), _reversal(payment, "chargeback")]
        case "chargeback_cancelled":
            return [Captured(payment), _reversal(payment, "chargeback", given_back=True)]
    return [Ignored(f"settle does not act on payments.{action}")]


def _refund(action: str, payload: Mapping[str, Any], resource: Mapping[str, Any]) -> list[Fact]:
    refund = resource.get("refunds") or {}
    state = refund_state(refund, action=action, at=moment(payload.get("created_at")))
    # A refund names its payment, never settle's invoice: the payment ties it.
    return [RefundChanged(link(refund, "payment"), None, _currency(refund), state,
                          source=SOURCE)]


def checkout_payment(request: Mapping[str, Any]) -> PaymentFacts | None:
    """The payment a billing request made (settle's checkout session), or None when it
    made none yet; its invoice is in the payment request's metadata."""
    links = request.get("links")
    payment_id = links.get("payment_request_payment") if isinstance(links, dict) else None
    wanted = request.get("payment_request")
    if not isinstance(payment_id, str) or not payment_id or not isinstance(wanted, dict):
        return None
    invoice_id = _meta(wanted, "invoice_id") or _meta(request, "invoice_id")
    if invoice_id is None:
        return None
    return PaymentFacts(payment_id, invoice_id, _amount(wanted), _currency(wanted), SOURCE,
                        _meta(wanted, "payment_request_id"), method=METHOD)


def _billing_request(action: str, resource: Mapping[str, Any]) -> list[Fact]:
    request = resource.get("billing_requests") or {}
    if _meta(request.get("payment_request") or {}, "invoice_id") is None \
            and _meta(request, "invoice_id") is None:
        return [Ignored("the billing request names no invoice (metadata.invoice_id)")]
    payment = checkout_payment(request)
    # The customer finished GoCardless's pages: the session is complete and its payment
    # is on its way (days, by Direct Debit). Its mandate is the customer's to keep
    # (CONTRACT §5 saved payment methods), which settle does not record yet: that is the
    # issue of saved payment methods, not this one.
    finished: list[Fact] = [CheckoutFinished(_id(request), "complete",
                                             payment.payment_id if payment else None, False)]
    return [*finished, Processing(payment)] if payment else finished


def interpret(event_type: str, payload: Mapping[str, Any],
              resource: Mapping[str, Any] | None) -> list[Fact]:
    """The facts a GoCardless notice and its fetched resource state (PermanentError for a
    malformed one)."""
    if resource is None:
        raise PermanentError("a GoCardless notice applied without its resource")
    resource_type, _, action = event_type.partition(".")
    if resource_type == "payments":
        return _payment(action, resource)
    if resource_type == "refunds":
        return _refund(action, payload, resource)
    if resource_type == "billing_requests" and action == "fulfilled":
        return _billing_request(action, resource)
    return [Ignored(f"settle does not act on {event_type}")]


async def _handle(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
    return await apply_facts(conn, interpret(event.type, event.payload, event.resource),
                             policy, known=event.known)


# The notices settle acts on; each names a resource, fetched before its transaction. Every
# other notice is recorded and ignored without a fetch: `payments.created`, `paid_out`
# and the rest of a payment's life that moves no money; and `mandates.*`, which will mark
# a saved payment method revoked once settle keeps mandates (CONTRACT §3a, §5: the issue
# of saved payment methods).
ACTED_ON = (
    *(f"payments.{action}" for action in (
        "submitted", "confirmed", "failed", "cancelled", "customer_approval_denied",
        "late_failure_settled", "charged_back", "chargeback_cancelled")),
    *(f"refunds.{action}" for action in (
        "created", "pending_submission", "submitted", "paid", "failed", "cancelled",
        "bounced", "funds_returned")),
    "billing_requests.fulfilled",
)
HANDLERS: dict[str, Registration] = {
    # The resource names its invoice (or its payment does): the notice need not.
    event_type: Registration(_handle, needs_invoice=False, fetches=True)
    for event_type in ACTED_ON
}
