"""A fake processor unlike Stripe, for the tests only: it proves the seam takes a second one.

Its webhooks are batches of thin notices, each naming a resource by id
(`{"events": [{"id", "resource_type", "action", "links": {"payment": "FP1"}}]}`),
signed with an HMAC header of its own (`Fake-Signature`, refused with 498 as
GoCardless refuses). The event job fetches the named resource from `FakeStore`,
which the test controls, and the fake interprets notice and resource into the
ledger's facts. Inside `fetch` it checks that no settle transaction is open and
that no connection of the pools it is told about is inside one.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg

from core import tx
from core.errors import PermanentError
from core.processor import (
    BadEvent,
    InboundEvent,
    PaymentState,
    RefundMade,
    SessionMade,
    SessionSpec,
    SessionState,
    SignatureError,
)
from core.settings import Settings
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
from ledger.inbox import Event, Handlers, Outcome, Policy, Registration
from ledger.payments import apply_facts

NAME = "fake"
SECRET = b"fake_secret"
ORIGIN = "https://fake-processor.test"


def sign(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {"Fake-Signature": hmac.new(secret, body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def notice(event_id: str, resource_type: str, action: str, **links: str) -> dict[str, Any]:
    return {"id": event_id, "resource_type": resource_type, "action": action, "links": links}


def batch(*notices: dict[str, Any]) -> bytes:
    return json.dumps({"events": list(notices)}).encode()


@dataclass
class FakeStore:
    """What the fake processor holds, and what the test sees of how it was asked."""

    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Raised by the next fetches, in order (an outage: core.errors.Unavailable).
    fetch_failures: list[Exception] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    # Pools whose connections must all be outside a transaction while fetching.
    pools: list[asyncpg.Pool] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def payment(self, payment_id: str, invoice_id: str, amount: int, status: str,
                currency: str = "USD") -> dict[str, Any]:
        self.payments[payment_id] = {"id": payment_id, "amount": amount, "currency": currency,
                                     "status": status, "metadata": {"invoice_id": invoice_id}}
        return self.payments[payment_id]


def _in_transaction(pool: asyncpg.Pool) -> bool:
    # asyncpg keeps its connections in holders (private, but this is a test's probe).
    return any(holder._con is not None and holder._con.is_in_transaction()
               for holder in pool._holders)


class FakeSettings:
    """The fake's own settings: it reads no variable and is always configured."""

    configured = True
    configured_by = "nothing (the fake is always configured)"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> FakeSettings:
        return cls()


class FakeProcessor:
    """The whole `core.processor.Processor`, over a `FakeStore`. It pays by `way` (Direct
    Debit unless the test says) in the `currencies` the test gives it: none unless told, so
    a test that does not offer it to customers sees Stripe's checkouts alone, as before.
    Its checkout pages live at `origin` (a test's own server, for a browser to open)."""

    name = NAME
    configured = True
    signature_refused_status = 498

    def __init__(self, store: FakeStore, *, way: str = "direct_debit",
                 currencies: frozenset[str] = frozenset(), origin: str = ORIGIN) -> None:
        self.store = store
        self.way = way
        self.currencies = currencies
        self.origin = origin

    def takes(self, currency: str) -> bool:
        return currency in self.currencies

    @property
    def checkout_origins(self) -> tuple[str, ...]:
        return (self.origin,)

    # --- the webhook ---------------------------------------------------------------

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        given = headers.get("Fake-Signature")
        if not given:
            raise SignatureError("no Fake-Signature header")
        if not hmac.compare_digest(given, hmac.new(SECRET, body, hashlib.sha256).hexdigest()):
            raise SignatureError("no signature matches")

    def parse(self, body: bytes) -> list[InboundEvent]:
        try:
            delivery = json.loads(body)
        except ValueError:
            raise BadEvent("body is not JSON") from None
        events = delivery.get("events") if isinstance(delivery, dict) else None
        if not isinstance(events, list) or not events or len(events) > 250:
            raise BadEvent("body has no events list")
        parsed = []
        for item in events:
            if not isinstance(item, dict) or not all(
                    isinstance(item.get(k), str) and item[k]
                    for k in ("id", "resource_type", "action")):
                raise BadEvent("an event without id, resource_type or action")
            parsed.append(InboundEvent(item["id"], f"{item['resource_type']}.{item['action']}",
                                       None, json.dumps(item)))
        return parsed

    async def fetch(self, event_type: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        if tx._OPEN.get() is not None:
            self.store.violations.append(f"{payload['id']}: a settle transaction is open")
        if any(_in_transaction(pool) for pool in self.store.pools):
            self.store.violations.append(f"{payload['id']}: a connection is in a transaction")
        self.store.fetched.append(str(payload["id"]))
        if self.store.fetch_failures:
            raise self.store.fetch_failures.pop(0)
        links = payload.get("links") or {}
        if "refund" in links:
            found = self.store.refunds.get(links["refund"])
        else:
            found = self.store.payments.get(links.get("payment", ""))
        if found is None:
            raise PermanentError(f"the fake has no resource for {payload['id']}")
        return dict(found)

    # --- calls ---------------------------------------------------------------------

    def amount_refused(self, amount: int, currency: str) -> str | None:
        return None

    def unit_refused(self, amount: int, currency: str) -> str | None:
        return None

    async def create_checkout(self, spec: SessionSpec) -> SessionMade:
        session_id = f"FS{next(self.store.ids)}"
        self.store.sessions[session_id] = {
            "id": session_id, "status": "open", "payment_id": None, "amount": spec.amount,
            "currency": spec.currency, "metadata": spec.metadata}
        self.store.calls.append(("create_checkout", session_id))
        return SessionMade(session_id, f"{self.origin}/pay/{session_id}", None)

    async def retrieve_checkout(self, session_id: str) -> SessionState:
        self.store.calls.append(("retrieve_checkout", session_id))
        session = self.store.sessions.get(session_id)
        if session is None:
            raise PermanentError(f"no session {session_id}")
        # Paid once its payment is confirmed (one the test did not describe counts as paid);
        # a Direct Debit only submitted is complete, not paid.
        payment = self.store.payments.get(session["payment_id"] or "", {})
        paid = session["payment_id"] is not None \
            and payment.get("status", "confirmed") == "confirmed"
        return SessionState(session_id, session["status"], paid and session["status"] == "complete",
                            session["payment_id"], session["amount"],
                            session["currency"].lower(), dict(session["metadata"]))

    async def expire_checkout(self, session_id: str, key: str) -> str:
        self.store.calls.append(("expire_checkout", session_id))
        session = self.store.sessions[session_id]
        if session["status"] == "open":
            session["status"] = "expired"
        return str(session["status"])

    async def retrieve_payment(self, payment_id: str) -> PaymentState:
        self.store.calls.append(("retrieve_payment", payment_id))
        payment = self.store.payments[payment_id]
        status = {"confirmed": "succeeded", "submitted": "processing"}.get(
            payment["status"], "failed")
        return PaymentState(payment_id, status, payment["amount"], payment["currency"].lower())

    async def refund(self, payment_id: str, amount: int, key: str,
                     metadata: Mapping[str, str]) -> RefundMade:
        self.store.calls.append(("refund", payment_id))
        for made in self.store.refunds.values():
            if made["metadata"].get("settle_key") == key:  # its idempotency key
                return RefundMade(made["id"], "pending")
        refund_id = f"FR{next(self.store.ids)}"
        self.store.refunds[refund_id] = {
            "id": refund_id, "amount": amount, "status": "pending", "metadata": dict(metadata),
            "links": {"payment": payment_id}, "currency": self.store.payments[payment_id]["currency"]}
        return RefundMade(refund_id, "pending")

    async def find_refund(self, payment_id: str, key: str) -> RefundMade | None:
        self.store.calls.append(("find_refund", payment_id))
        for made in self.store.refunds.values():
            if made["metadata"].get("settle_key") == key:
                return RefundMade(made["id"], made["status"])
        return None

    # How long it keeps an idempotency key; its checkout pages name no session on return.
    idempotency_window = timedelta(hours=24)

    def return_url(self, page: str) -> str:
        return page

    async def close(self) -> None:
        return None


# --- interpreting: a notice and what was fetched, into facts ---------------------------

REFUND_STATUSES = {"created": "pending", "paid": "succeeded", "failed": "failed"}


def _payment(resource: dict[str, Any]) -> PaymentFacts:
    return PaymentFacts(resource["id"], resource["metadata"]["invoice_id"], resource["amount"],
                        resource["currency"].lower(), NAME, method="direct_debit")


def interpret(event_type: str, payload: dict[str, Any],
              resource: dict[str, Any] | None) -> list[Fact]:
    if resource is None:
        raise PermanentError("a thin notice applied without its resource")
    resource_type, _, action = event_type.partition(".")
    if resource_type == "refunds":
        payment = resource["links"]["payment"]
        state = RefundState(resource["id"], resource["amount"], REFUND_STATUSES[action],
                            resource["metadata"].get("settle_refund") or None)
        return [RefundChanged(payment, None, resource["currency"].lower(), state, source=NAME)]
    payment = _payment(resource)
    match action:
        case "submitted":
            return [Processing(payment)]
        case "confirmed":
            session = payload.get("links", {}).get("session")
            finished = [CheckoutFinished(session, "complete", payment.payment_id, True)] \
                if session else []
            return [*finished, Captured(payment)]
        case "failed":
            return [PaymentFailed(payment)]
        case "charged_back" | "chargeback_cancelled":
            return [Reversed(payment.payment_id, payment.invoice_id, payment.currency,
                             f"{payment.payment_id}-chargeback", payment.amount,
                             given_back=action == "chargeback_cancelled", source=NAME)]
    return [Ignored(f"the fake does not act on {event_type}")]


async def _handle(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
    return await apply_facts(conn, interpret(event.type, event.payload, event.resource), policy,
                             known=event.known)


HANDLERS: Handlers = {
    event_type: Registration(_handle, needs_invoice=False, fetches=True)
    for event_type in ("payments.submitted", "payments.confirmed", "payments.failed",
                       "payments.charged_back", "payments.chargeback_cancelled",
                       "refunds.created", "refunds.paid", "refunds.failed")
}


def registry(store: FakeStore, *, way: str = "direct_debit",
             currencies: frozenset[str] = frozenset(), origin: str = ORIGIN) -> dict[str, Any]:
    """PROCESSORS with the fake registered beside Stripe (taking `currencies` by `way`)."""
    from worker.services import PROCESSORS
    from worker.services import Registration as Registered

    def make(settings: Settings, timeout: float) -> FakeProcessor:
        return FakeProcessor(store, way=way, currencies=currencies, origin=origin)

    return {**PROCESSORS, NAME: Registered(FakeSettings.from_env, make, HANDLERS)}
