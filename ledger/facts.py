"""Payment facts: what a processor's events say, in settle's words.

A processor package turns its own events into these (`processors.stripe.events`);
`ledger.payments.apply_facts` applies them. The ledger never reads a
processor's payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class PaymentFacts:
    """One payment as the processor describes it (its id is the processor's)."""

    payment_id: str
    invoice_id: str
    amount: int
    currency: str
    # Where it came from: the processor's name, or "manual" (recorded by the merchant).
    source: str
    payment_request_id: str | None = None
    method: str | None = None
    reference: str | None = None


@dataclass(frozen=True, slots=True)
class Captured:
    """The money is captured: apply it."""

    payment: PaymentFacts


@dataclass(frozen=True, slots=True)
class Processing:
    """An asynchronous payment (bank transfer, debit) started: record it, apply nothing."""

    payment: PaymentFacts


@dataclass(frozen=True, slots=True)
class PaymentFailed:
    """A processing payment failed: nothing was received."""

    payment: PaymentFacts


@dataclass(frozen=True, slots=True)
class CheckoutFinished:
    """A checkout session settle made is complete or expired: never reuse or expire it.
    `settled`: its outcome is final (expired, or its payment captured or failed)."""

    session_id: str
    status: str
    payment_id: str | None = None
    settled: bool = False


@dataclass(frozen=True, slots=True)
class RefundState:
    """One refund as the processor describes it. `settle_id` is the id settle gave a
    refund it asked for (carried in the refund's metadata), else None."""

    id: str
    amount: int
    # settle's words (`ledger.money.REFUND_RANK`): pending (the processor has it, no outcome
    # yet), succeeded, or failed (it did not happen: refused, cancelled, returned).
    status: str
    settle_id: str | None = None
    # On the processor's clock: when it made the refund, and when it said this status.
    created: datetime | None = None
    reported_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Cumulative:
    """A payment's cumulative refunded total as the processor reported it, and when (its
    clock; None when the report did not say): a newer report may be lower, after a
    refund failed (`ledger.money.refund_totals`)."""

    amount: int
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Refunded:
    """The processor's cumulative refunded total for a payment (an older report never
    lowers it), with the refunds the report lists. `invoice_id` is None when the
    report does not name the invoice."""

    payment_id: str
    invoice_id: str | None
    cumulative: Cumulative
    currency: str
    payment_amount: int
    refunds: tuple[RefundState, ...] = ()
    # The processor's name (`Processor.name`): a payment first heard of through this
    # news is that processor's.
    source: str = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class RefundChanged:
    """One refund's status changed (it may have failed)."""

    payment_id: str
    invoice_id: str | None
    currency: str
    refund: RefundState
    # The processor's name (`Processor.name`): a payment first heard of through this
    # news is that processor's.
    source: str = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Reversed:
    """The customer's bank took a payment's money back (a chargeback, a late failure):
    `reversal_id` is the processor's id for it, applied once. `given_back`: the processor
    says it was undone (a dispute won, a chargeback cancelled)."""

    payment_id: str
    invoice_id: str | None
    currency: str
    reversal_id: str
    amount: int
    given_back: bool = False
    # The processor's name (`Processor.name`).
    source: str = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class Ignored:
    """Nothing for the books, and why."""

    reason: str


Fact = (Captured | Processing | PaymentFailed | CheckoutFinished | Refunded | RefundChanged
        | Reversed | Ignored)
