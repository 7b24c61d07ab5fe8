"""The merchant's side of the money (CONTRACT §5): payments made outside the processor,
refunds, credit notes, credit adjustments and the credit ledger, lists of invoices.

Every POST that moves money takes the caller's `id`: the same body again is
answered 200 with the same object, another body under that id 409 id_conflict.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from handlers.answers import (
    CreditEntry,
    CreditEntryList,
    CreditNote,
    Customer,
    Invoice,
    InvoiceList,
    Payment,
    Refund,
)
from handlers.keys import books, services
from handlers.models import (
    AdjustmentIn,
    CreditNoteIn,
    EntriesQuery,
    InvoicesQuery,
    ManualPaymentIn,
    RefundIn,
)
from handlers.routes import Routes
from handlers.validation import body, path_id, query
from ledger import credit, credit_notes, invoices, payments, refunds

ROUTES = Routes("merchant")


def created(answer: tuple[dict[str, Any], bool], status: int = 201) -> web.Response:
    value, new = answer
    return web.json_response(value, status=status if new else 200)


@ROUTES.post("/v1/invoices/{id}/payments", body=ManualPaymentIn,
             answers={200: Payment, 201: Payment}, on=Invoice,
             refs={"amount": (Invoice, "amount_remaining")},
             errors={409: ("id_conflict",), 422: ("invoice_not_open",)})
async def record_payment(request: web.Request) -> web.Response:
    """Record money received outside the processor, applied exactly like a capture.

    201 when recorded; the same id and body again is 200 with the same payment.
    """
    data = await body(request, ManualPaymentIn)
    return created(await payments.record_manual(books(request), path_id(request),
                                                payments.ManualPayment(
        id=data.id, amount=data.amount, method=data.method, reference=data.reference,
        received_at=data.received_at, request=data.model_dump(mode="json"))))


@ROUTES.post("/v1/payments/{id}/refunds", body=RefundIn, answers={200: Refund, 202: Refund},
             on=Payment,
             refs={"amount": (Payment, "amount")},
             errors={409: ("id_conflict", "processor_not_configured"),
                     422: ("amount_exceeds_refundable", "amount_invalid")})
async def refund_payment(request: web.Request) -> web.Response:
    """Refund a payment: through the processor (the refund's id its idempotency key), or at
    once for a manual one.

    202 when asked for; the same id and body again is 200 with the same refund.
    """
    data = await body(request, RefundIn)
    return created(await refunds.request_refund(
        books(request), path_id(request),
        refunds.RefundRequest(data.id, data.amount, data.reason, data.model_dump(mode="json")),
        services(request).processors), status=202)


@ROUTES.get("/v1/refunds/{id}", answers={200: Refund}, on=Refund)
async def get_refund(request: web.Request) -> web.Response:
    """A refund and where it stands."""
    return web.json_response(await refunds.get_refund(services(request).pool, path_id(request)))


@ROUTES.post("/v1/invoices/{id}/credit-notes", body=CreditNoteIn,
             answers={200: CreditNote, 201: CreditNote}, on=Invoice,
             errors={409: ("id_conflict", "processor_not_configured"),
                     422: ("amount_exceeds_creditable", "invoice_not_open")})
async def issue_credit_note(request: web.Request) -> web.Response:
    """Take part of an invoice back: off what is owed first, the rest credited (or
    refunded with `refund`)."""
    data = await body(request, CreditNoteIn)
    return created(await credit_notes.issue(books(request), path_id(request),
                                            credit_notes.CreditNoteInput(
        data.id, data.amount, data.reason, data.refund, data.model_dump(mode="json"))))


@ROUTES.post("/v1/customers/{id}/credit-adjustments", body=AdjustmentIn,
             answers={200: CreditEntry, 201: CreditEntry}, on=Customer,
             errors={409: ("id_conflict", "insufficient_credit")})
async def adjust_credit(request: web.Request) -> web.Response:
    """Give credit (amount > 0) or take it (amount < 0, never below zero) by hand."""
    data = await body(request, AdjustmentIn)
    return created(await credit.adjust(books(request), path_id(request), credit.Adjustment(
        data.id, data.amount, data.currency, data.reason, data.model_dump(mode="json"))))


@ROUTES.get("/v1/customers/{id}/credit-entries", query=EntriesQuery,
            answers={200: CreditEntryList}, on=Customer)
async def credit_entries(request: web.Request) -> web.Response:
    """A customer's credit ledger, newest first, each entry with the balance after it."""
    asked = query(request, EntriesQuery)
    return web.json_response(await credit.list_entries(
        services(request).pool, path_id(request), currency=asked.currency, cursor=asked.next,
        limit=asked.limit))


@ROUTES.get("/v1/invoices", query=InvoicesQuery, answers={200: InvoiceList})
async def list_invoices(request: web.Request) -> web.Response:
    """Invoices newest first, by status and customer."""
    asked = query(request, InvoicesQuery)
    return web.json_response(await invoices.list_invoices(
        services(request).pool, status=asked.status, customer_id=asked.customer_id,
        cursor=asked.next, limit=asked.limit, urls=books(request)))


def add_routes(app: web.Application) -> None:
    ROUTES.add_to(app)
