"""The seam to a payment processor: what settle asks of one, in settle's own words.

A processor package (one under `processors/`) implements `Processor` for
the calls settle makes (Checkout Sessions, refunds, look-ups) and the
webhook's stages: verify the delivery, read its notices (one or many: Stripe
posts one event, GoCardless up to 250) for the intake to record, and, for a
thin notice that only names a resource, fetch what the processor says of it
now (run by the event job before the event's transaction opens). It registers
the handlers that turn its notices (and what was fetched) into payment facts
(`ledger.facts`). Nothing outside
that package knows the processor's shapes, hosts or error types: its failures
reach the rest of settle as `core.errors.Unavailable` (try again later) or
`core.errors.PermanentError` (it said no).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol


class SignatureError(ValueError):
    """Why a delivery is refused; safe to log (never contains the header)."""


class BadEvent(ValueError):
    """A signed body that is not an event settle can record."""


@dataclass(frozen=True, slots=True)
class InboundEvent:
    """One notice of a verified delivery, as the intake records it."""

    event_id: str
    type: str
    # The invoice the event is about, when it names one (settle puts the invoice id
    # on every object it makes at the processor).
    invoice_id: str | None
    body: str


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """A hosted checkout page for one amount of one invoice (CONTRACT §6)."""

    invoice_id: str
    invoice_number: str
    payment_request_id: str | None
    amount: int
    currency: str
    customer_email: str
    success_url: str
    cancel_url: str
    idempotency_key: str
    # "customer" when the customer chose the amount on the invoice page.
    amount_source: str | None = None

    @property
    def metadata(self) -> dict[str, str]:
        metadata = {"invoice_id": self.invoice_id}
        if self.payment_request_id:
            metadata["payment_request_id"] = self.payment_request_id
        if self.amount_source:
            metadata["amount_source"] = self.amount_source
        return metadata


@dataclass(frozen=True, slots=True)
class SessionMade:
    id: str
    url: str
    expires_at: int | None


@dataclass(frozen=True, slots=True)
class SessionState:
    """What the processor says of a checkout session (reconcile asks), in settle's words:
    `status` open, complete (the customer finished it) or expired; `paid` when it is
    complete and its payment captured (or there was nothing to pay). A complete session
    not paid has a payment still processing (a bank transfer, a debit). `method` is how
    it was paid, in settle's words (`card`, `bank_transfer`, `direct_debit`), or None
    when the processor does not say."""

    id: str
    status: str
    paid: bool
    payment_id: str | None
    amount: int
    currency: str
    metadata: dict[str, str]
    method: str | None = None


@dataclass(frozen=True, slots=True)
class PaymentState:
    """What the processor says of one payment (reconcile asks about processing ones), in
    settle's words: `status` succeeded (captured), processing (no outcome yet) or failed
    (nothing was received); `method` as a session's."""

    id: str
    status: str
    amount: int  # received, when succeeded
    currency: str
    method: str | None = None


@dataclass(frozen=True, slots=True)
class RefundMade:
    id: str
    # In settle's words: pending (accepted, no outcome yet), succeeded, or failed.
    status: str
    # When the processor made it (its clock): tells which refund reports can hold it.
    created: datetime | None = None


class Processor(Protocol):
    """One payment processor. `configured` is False when settle has no API key for it:
    webhooks are still verified and recorded, but no call can be made."""

    @property
    def name(self) -> str: ...

    @property
    def configured(self) -> bool: ...

    @property
    def way(self) -> str:
        """How a customer pays through it, in settle's words: "card" or "direct_debit"."""

    def takes(self, currency: str) -> bool:
        """Whether it can take a payment in this (lower-case) currency."""

    @property
    def checkout_origins(self) -> tuple[str, ...]:
        """Where its hosted checkout pages live (`https://checkout.example`): the invoice
        page's forms may be redirected there (its Content-Security-Policy says so)."""

    @property
    def signature_refused_status(self) -> int:
        """The HTTP status a delivery with a missing or wrong signature is answered with
        (Stripe: 400; GoCardless: 498)."""

    def verify(self, body: bytes, headers: Mapping[str, str], now: float) -> None:
        """Raise SignatureError unless the delivery is signed by the processor."""

    def parse(self, body: bytes) -> list[InboundEvent]:
        """The delivery's notices, in order (at least one); raise BadEvent unless every
        one is well-formed (then nothing of the body is recorded)."""

    async def fetch(self, event_type: str, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        """What the processor says now of the resource a recorded notice names, or None
        when its notices carry what they mean (Stripe's do). Called by the event job with
        no transaction open; raises `core.errors.Unavailable` (tried again, with backoff)
        or `PermanentError` (the event fails with its reason)."""

    def amount_refused(self, amount: int, currency: str) -> str | None:
        """Why the processor would refuse to charge this amount (below its least charge,
        above its largest, or `unit_refused`), or None."""

    def unit_refused(self, amount: int, currency: str) -> str | None:
        """Why the processor could not move this amount at all, as a charge or a refund:
        finer than the least step it moves in the currency; or None. Invoice totals and
        refunds are held to this; a charge to `amount_refused`."""

    async def create_checkout(self, spec: SessionSpec) -> SessionMade: ...

    async def retrieve_checkout(self, session_id: str) -> SessionState: ...

    async def expire_checkout(self, session_id: str, key: str) -> str:
        """Expire an open session; its status afterwards (one no longer open is done)."""

    async def retrieve_payment(self, payment_id: str) -> PaymentState: ...

    async def refund(self, payment_id: str, amount: int, key: str,
                     metadata: Mapping[str, str]) -> RefundMade: ...

    async def find_refund(self, payment_id: str, key: str) -> RefundMade | None:
        """A refund of the payment made earlier under `key` (in its metadata), if any:
        asked before retrying a refund once the idempotency key may have expired."""

    async def close(self) -> None: ...

    def return_url(self, page: str) -> str:
        """The page a customer returns to from a finished checkout, written so that the
        processor names its session on it (`page?session=<id>`): the invoice page says the
        payment is being confirmed until it is applied."""

    @property
    def idempotency_window(self) -> timedelta:
        """How long the processor remembers an idempotency key: a refund retried later
        first asks whether it already happened (`find_refund`)."""


def takers(processors: Iterable[Processor], currency: str) -> list[Processor]:
    """The configured processors that take payments in this (lower-case) currency: the
    ways an invoice in it may be paid online."""
    return [p for p in processors if p.configured and p.takes(currency)]


def refused_by_all(processors: Iterable[Processor],
                   reason: Callable[[Processor], str | None]) -> str | None:
    """Why an amount cannot be taken by any of these processors (each one's `reason`,
    joined), or None when one of them takes it, or when there is none to ask."""
    reasons = [reason(p) for p in processors]
    if not reasons or any(r is None for r in reasons):
        return None
    return "; ".join(dict.fromkeys(r for r in reasons if r is not None))
