"""What settle tells the invoicing application (CONTRACT §9), as pydantic models for the
document's `webhooks` section.

Every message is `{"type", "timestamp", "data"}`, signed as Standard Webhooks
says (the `webhook-id`, `webhook-timestamp` and `webhook-signature` headers);
`data` is the object as the API would answer for it at that moment plus a
`sequence` that grows with each message about the same invoice (or customer),
so a receiver can drop one older than what it has. The messages are owed by
`delivery.outbound.owe_event` and sent by `jobs.outbox` (`notify.webhook`); this
module says what they hold, and `tests/test_outbound_webhooks.py` holds every
delivered message to it. `docs/webhooks.md` is the receiver's page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from delivery.outbound import EVENT_TYPES, EventType
from handlers.answers import CreditNote, Customer, Invoice, Payment, PaymentRequest

Sequence = int


class InvoiceData(Invoice):
    sequence: Sequence


class PaymentData(Payment):
    invoice_id: str
    sequence: Sequence


class PaymentRequestData(PaymentRequest):
    sequence: Sequence


class CreditNoteData(CreditNote):
    sequence: Sequence


class CustomerData(Customer):
    sequence: Sequence


class PingData(BaseModel):
    """The contract does not say what a ping holds: settle sends the endpoint's id."""

    model_config = ConfigDict(extra="allow")

    endpoint_id: str


def _about(kind: str) -> Any:
    """The types of `delivery.outbound.EVENT_TYPES` about one kind of object (`invoice.*`),
    as the Literal pydantic reads when it builds a message's model."""
    return Literal[tuple(t for t in EVENT_TYPES if t.split(".")[0] == kind)]


if TYPE_CHECKING:  # a Literal made at run time is beyond mypy: to it, any event type
    InvoiceType: TypeAlias = EventType
    PaymentType: TypeAlias = EventType
    PaymentRequestType: TypeAlias = EventType
    CreditNoteType: TypeAlias = EventType
    CustomerType: TypeAlias = EventType
else:
    InvoiceType = _about("invoice")
    PaymentType = _about("payment")
    PaymentRequestType = _about("payment_request")
    CreditNoteType = _about("credit_note")
    CustomerType = _about("customer")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")

    timestamp: AwareDatetime = Field(description="when the message was made (ISO 8601)")


class InvoiceMessage(Message):
    type: InvoiceType
    data: InvoiceData


class PaymentMessage(Message):
    type: PaymentType
    data: PaymentData


class PaymentRequestMessage(Message):
    type: PaymentRequestType
    data: PaymentRequestData


class CreditNoteMessage(Message):
    type: CreditNoteType
    data: CreditNoteData


class CustomerMessage(Message):
    type: CustomerType
    data: CustomerData


class PingMessage(Message):
    type: Literal["ping"]
    data: PingData


MESSAGES: tuple[type[Message], ...] = (InvoiceMessage, PaymentMessage, PaymentRequestMessage,
                                       CreditNoteMessage, CustomerMessage, PingMessage)


def event_types(message: type[Message]) -> tuple[str, ...]:
    """The types (`invoice.paid`...) a message model carries."""
    schema = message.model_json_schema()["properties"]["type"]
    return tuple(schema["enum"]) if "enum" in schema else (schema["const"],)
