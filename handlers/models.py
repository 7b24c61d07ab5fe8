"""What each API route accepts (CONTRACT §5), as pydantic models of the checked types
in `handlers.validation`."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field

from handlers.validation import Amount, Body, Currency, Email, Id, IsoDate, Note, Query, Text

Emails = Annotated[list[Email], Field(max_length=50)]


class CustomerIn(Body):
    email: Email
    name: Text | None = None


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
    status: Literal["pending", "processed", "ignored", "failed"] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=200)] | None = None


class OutboxQuery(Query):
    status: Literal["pending", "done", "failed"] | None = None
    kind: Annotated[str, Field(pattern=r"^[a-z_]{1,40}$")] | None = None
    limit: Annotated[int, Field(ge=1, le=100)] = 50
    next: Annotated[str, Field(max_length=200)] | None = None
