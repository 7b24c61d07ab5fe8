"""What each API route accepts (CONTRACT §5), as pydantic models of the checked types
in `handlers.validation`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field
from pydantic.json_schema import WithJsonSchema
from pydantic_core import PydanticCustomError

from handlers.validation import (
    Amount,
    Body,
    Currency,
    Email,
    Id,
    IsoDate,
    LocaleTag,
    Note,
    Query,
    Text,
)
from delivery.outbound import EventType

Emails = Annotated[list[Email], Field(max_length=50)]


class CustomerIn(Body):
    CODES: ClassVar[dict[str, str]] = {"locale": "input_invalid"}

    email: Email
    name: Text | None = None
    locale: LocaleTag = "en"


class LineIn(Body):
    description: Text
    # Signed: a discount is a line too; the lines add up to the total.
    amount: Annotated[int, Field(gt=-(2**53), lt=2**53)]


class InvoiceIn(Body):
    CODES: ClassVar[dict[str, str]] = {"total": "total_invalid",
                                       "notify_emails": "email_invalid"}

    customer_id: Id
    number: Annotated[Text, Field(max_length=255)]
    currency: Currency
    total: Amount
    due_date: IsoDate | None = None
    kind: Literal["invoice", "quote_deposit"] = "invoice"
    notify_emails: Emails = []
    auto_apply_credit: bool = True
    lines: Annotated[list[LineIn], Field(max_length=500)] | None = None
    allow_partial: bool = False
    min_partial_amount: Annotated[int, Field(ge=0, lt=2**53)] = 0


class SendIn(Body):
    CODES: ClassVar[dict[str, str]] = {"mail": "input_invalid"}

    mail: Annotated[bool, Field(description="mail the customer the invoice (invoice_sent: its "
                                            "page link, its PDF attached)")] = True


class ApplyCreditIn(Body):
    CODES: ClassVar[dict[str, str]] = {"amount": "amount_invalid"}

    amount: Amount | None = None


class PaymentRequestIn(Body):
    CODES: ClassVar[dict[str, str]] = {"amount": "amount_invalid", "to": "email_invalid",
                                       "cc": "email_invalid", "bcc": "email_invalid"}

    amount: Amount
    # One address, or a non-empty list of them, kept in the shape the caller gave.
    to: Email | Annotated[list[Email], Field(min_length=1, max_length=50)]
    cc: Emails = []
    bcc: Emails = []
    note: Note | None = None
    replace: bool = False


class ReconcileIn(Body):
    CODES: ClassVar[dict[str, str]] = {"invoice_id": "id_invalid"}

    invoice_id: Id | None = None


class EventsQuery(Query):
    CODES: ClassVar[dict[str, str]] = {"next": "cursor_invalid"}

    status: Literal["pending", "processed", "ignored", "failed"] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=200)] | None = None


class OutboxQuery(Query):
    CODES: ClassVar[dict[str, str]] = {"next": "cursor_invalid"}

    status: Literal["pending", "done", "failed"] | None = None
    kind: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=200)] | None = None


def _not_zero(value: int) -> int:
    if value == 0:
        raise PydanticCustomError("amount_invalid", "an adjustment is not zero")
    return value


# A signed amount for adjustments: never zero, never a float.
SignedAmount = Annotated[int, Field(gt=-(2**53), lt=2**53), AfterValidator(_not_zero),
                         WithJsonSchema({"type": "integer", "exclusiveMinimum": -(2**53),
                                         "exclusiveMaximum": 2**53, "not": {"const": 0},
                                         "description": "minor units: > 0 gives credit, "
                                                        "< 0 takes it; never 0"})]


def _iso_datetime(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("a time looks like 2026-12-31T09:30:00Z")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is not None:
        try:
            # Stored in UTC: 9999-12-31T23:00:00-05:00 is in the year 10000 there, which
            # no datetime holds (asyncpg would fail converting it: a 500).
            parsed.astimezone(UTC)
        except OverflowError:
            raise ValueError("the time in UTC is outside the years 1 to 9999") from None
    return parsed


class ManualPaymentIn(Body):
    CODES: ClassVar[dict[str, str]] = {"amount": "amount_invalid", "id": "id_invalid"}

    id: Id
    amount: Amount
    method: Literal["cash", "check", "bank_transfer", "card_offline", "other"]
    reference: Text | None = None
    received_at: Annotated[AwareDatetime, BeforeValidator(_iso_datetime)] | None = None


class RefundIn(Body):
    CODES: ClassVar[dict[str, str]] = {"amount": "amount_invalid", "id": "id_invalid"}

    id: Id
    amount: Amount
    reason: Note | None = None


class CreditNoteIn(Body):
    CODES: ClassVar[dict[str, str]] = {"amount": "amount_invalid", "id": "id_invalid"}

    id: Id
    amount: Amount
    reason: Note | None = None
    refund: bool = False


class AdjustmentIn(Body):
    CODES: ClassVar[dict[str, str]] = {"amount": "amount_invalid", "id": "id_invalid",
                                       "reason": "input_invalid"}

    id: Id
    amount: SignedAmount
    currency: Currency
    reason: Note


class InvoicesQuery(Query):
    CODES: ClassVar[dict[str, str]] = {"customer_id": "id_invalid", "next": "cursor_invalid"}

    status: Literal["draft", "sent", "partially_paid", "overdue", "paid", "void"] | None = None
    customer_id: Id | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=600)] | None = None


class EntriesQuery(Query):
    CODES: ClassVar[dict[str, str]] = {"next": "cursor_invalid"}

    currency: Currency | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=200)] | None = None


class EndpointIn(Body):
    CODES: ClassVar[dict[str, str]] = {"url": "url_invalid", "events": "events_invalid",
                                       "description": "input_invalid"}

    # A public https URL as the example: PUT resolves no name, so it is accepted as it is,
    # and generated requests (tests/test_openapi.py) go on to the endpoint's lifecycle.
    url: Annotated[str, Field(min_length=1, max_length=2000,
                              description="https://... (http, loopback and private addresses "
                                          "only with OUTBOUND_ALLOW_PRIVATE=true)",
                              examples=["https://hooks.example.com/settle"])]
    # The event types an endpoint may ask for (CONTRACT §9): `delivery.outbound`'s one list.
    events: Annotated[list[EventType], Field(min_length=1, max_length=50)] | None = None
    description: Text | None = None
    disabled: bool = False


class EndpointsQuery(Query):
    CODES: ClassVar[dict[str, str]] = {"next": "cursor_invalid"}

    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=600)] | None = None


class MessagesQuery(Query):
    CODES: ClassVar[dict[str, str]] = {"next": "cursor_invalid"}

    status: Literal["pending", "done", "failed"] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=200)] | None = None
