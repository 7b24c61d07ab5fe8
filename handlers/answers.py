"""What each API route answers (CONTRACT §5, §8), as pydantic models for the document.

The ledger shapes the answers (`ledger.invoices.view_of` and its kin); these
models describe those shapes field for field, so the OpenAPI document says
what the service really sends, and schemathesis (`tests/test_openapi.py`)
checks every answer against them. Unknown fields are allowed: a newer
service may add one without breaking a client.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

Minor = int  # an amount in the currency's minor unit (cents), never a float


class Answer(BaseModel):
    model_config = ConfigDict(extra="allow")

    # The field that identifies the object (what a path's {id} takes).
    KEY: ClassVar[str] = "id"


class Customer(Answer):
    id: str
    email: str
    name: str | None
    locale: str = Field(description="a BCP 47 tag: en, de-DE, fr-CA")
    credit_balance: dict[str, Minor] = Field(
        description="the customer's credit per currency, e.g. {\"usd\": 1500}")
    portal_url: str = Field(description="the customer's page: {PUBLIC_URL}/c/{token}")


class PaymentRequest(Answer):
    id: str
    invoice_id: str
    amount: Minor
    currency: str
    status: Literal["active", "paid", "cancelled", "superseded"]
    url: str = Field(description="the pay link: {PUBLIC_URL}/pay/{token}")
    to: str | list[str]
    cc: list[str]
    bcc: list[str]
    note: str | None
    reminders_sent: int
    created_at: AwareDatetime


class Payment(Answer):
    id: str = Field(description="the processor's payment id, or the caller's for a manual one")
    source: Literal["stripe", "gocardless", "manual"]
    method: str | None
    amount: Minor
    applied: Minor = Field(description="what went to the invoice")
    credited: Minor = Field(description="what went to the customer's credit as excess")
    refunded: Minor
    reversed: Minor = Field(description="what the customer's bank took back (chargebacks, "
                            "late failures), net of what it gave back")
    status: Literal["processing", "succeeded", "failed"]
    payment_request_id: str | None
    created_at: AwareDatetime


class CreditNote(Answer):
    id: str
    invoice_id: str
    amount: Minor
    pre_payment_amount: Minor
    post_payment_amount: Minor
    credited_amount: Minor
    refunded_amount: Minor
    reason: str | None
    created_at: AwareDatetime


class Line(Answer):
    description: str
    amount: int = Field(description="minor units; negative for a discount")


class Invoice(Answer):
    id: str
    number: str
    customer_id: str
    currency: str
    total: Minor
    amount_paid: Minor
    amount_credited: Minor
    amount_credit_noted: Minor
    amount_remaining: Minor
    status: Literal["draft", "sent", "partially_paid", "overdue", "paid", "void"]
    kind: Literal["invoice", "quote_deposit"]
    due_date: str | None = Field(description="an ISO date, 2026-12-31")
    notify_emails: list[str]
    auto_apply_credit: bool
    lines: list[Line] | None
    allow_partial: bool
    min_partial_amount: int
    pay_url: str | None = Field(
        description="pays the full outstanding amount; null unless the invoice is open and a "
                    "processor is configured")
    invoice_url: str = Field(description="the customer's invoice page: {PUBLIC_URL}/i/{token}")
    payment_requests: list[PaymentRequest]
    payments: list[Payment]
    credit_notes: list[CreditNote]


class InvoiceList(Answer):
    invoices: list[Invoice]
    next: str | None = Field(description="the cursor of the following page; null at the end")


class Refund(Answer):
    id: str
    payment_id: str
    amount: Minor
    status: Literal["pending", "succeeded", "failed"]
    reason: str | None


class CreditEntry(Answer):
    id: str
    amount: Minor = Field(description="signed: credit given is positive, taken negative")
    currency: str
    kind: Literal["overpayment", "applied", "taken_back", "adjustment", "credit_note",
                  "refund_fallback"]
    invoice_id: str | None
    payment_id: str | None
    reason: str | None
    created_at: AwareDatetime
    balance_after: Minor


class CreditEntryList(Answer):
    entries: list[CreditEntry]
    next: str | None


class JobStarted(Answer):
    KEY: ClassVar[str] = "job_id"

    job_id: str


class Job(Answer):
    id: str
    kind: Literal["reconcile"]
    status: Literal["queued", "in_progress", "complete", "failed"]
    result: dict[str, Any] | None
    reason: str | None
    created_at: AwareDatetime
    finished_at: AwareDatetime | None


class Event(Answer):
    id: str = Field(description="the processor's event id")
    type: str
    status: Literal["pending", "processed", "ignored", "failed"]
    reason: str | None
    attempts: int
    received_at: AwareDatetime
    processed_at: AwareDatetime | None


class EventList(Answer):
    events: list[Event]
    next: str | None


class Replayed(Answer):
    id: str
    status: Literal["pending", "processed", "ignored", "failed"]


class OutboxItem(Answer):
    id: int
    kind: str
    key: str
    status: Literal["pending", "done", "failed"]
    reason: str | None
    attempts: int
    invoice_id: str | None
    created_at: AwareDatetime
    done_at: AwareDatetime | None


class OutboxList(Answer):
    items: list[OutboxItem]
    next: str | None


class Retried(Answer):
    id: int
    status: Literal["pending", "done", "failed"]


class WebhookEndpoint(Answer):
    id: str
    url: str
    events: list[str] = Field(description="the types sent; every type when none was asked for")
    description: str | None
    disabled: bool
    secret: str = Field(description="whsec_ + base64 of 24 random bytes (Standard Webhooks)")
    created_at: AwareDatetime


class WebhookEndpointList(Answer):
    endpoints: list[WebhookEndpoint]
    next: str | None


class Pinged(Answer):
    KEY: ClassVar[str] = "message_id"

    message_id: str


class WebhookMessage(Answer):
    id: str = Field(description="the message's webhook-id")
    outbox_id: int = Field(description="its row in /v1/ops/outbox (retry a failed one there)")
    type: str
    status: Literal["pending", "done", "failed"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: AwareDatetime | None
    created_at: AwareDatetime


class WebhookMessageList(Answer):
    messages: list[WebhookMessage]
    next: str | None
