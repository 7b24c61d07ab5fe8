"""The application API for customers, invoices and payment requests (CONTRACT §5)."""

from __future__ import annotations

from aiohttp import web

from handlers.answers import Customer, Invoice, PaymentRequest
from handlers.keys import books, services
from handlers.models import ApplyCreditIn, CustomerIn, InvoiceIn, PaymentRequestIn, SendIn
from handlers.routes import Routes
from handlers.validation import body, path_id
from ledger import customers as books_of_customers, invoices, requests
from reads import customers

ROUTES = Routes("invoices")


@ROUTES.put("/v1/customers/{id}", body=CustomerIn, answers={200: Customer, 201: Customer})
async def put_customer(request: web.Request) -> web.Response:
    """Create or update a customer under the caller's id.

    201 when created, 200 when it existed.
    """
    data = await body(request, CustomerIn)
    customer, created = await books_of_customers.upsert_customer(
        books(request), path_id(request), data.email, data.name, data.locale)
    return web.json_response(customer, status=201 if created else 200)


@ROUTES.get("/v1/customers/{id}", answers={200: Customer}, on=Customer)
async def get_customer(request: web.Request) -> web.Response:
    """A customer, with its credit balance per currency."""
    return web.json_response(await customers.get_customer(
        services(request).pool, path_id(request), urls=books(request)))


@ROUTES.put("/v1/invoices/{id}", body=InvoiceIn, answers={200: Invoice, 201: Invoice},
            refs={"customer_id": Customer},
            errors={409: ("invoice_not_draft", "invoice_has_payments"),
                    422: ("customer_not_found", "lines_mismatch", "partial_not_allowed")})
async def put_invoice(request: web.Request) -> web.Response:
    """Create or update a draft invoice under the caller's id.

    201 when created, 200 when updated; once sent it no longer changes (409 invoice_not_draft).
    """
    data = await body(request, InvoiceIn)
    invoice, created = await invoices.upsert_invoice(
        books(request), path_id(request), invoices.InvoiceInput(
            customer_id=data.customer_id, number=data.number, currency=data.currency,
            total=data.total, due_date=data.due_date, kind=data.kind,
            notify_emails=tuple(data.notify_emails), auto_apply_credit=data.auto_apply_credit,
            lines=None if data.lines is None else tuple(
                invoices.Line(line.description, line.amount) for line in data.lines),
            allow_partial=data.allow_partial, min_partial_amount=data.min_partial_amount),
        list(services(request).processors.values()))
    return web.json_response(invoice, status=201 if created else 200)


@ROUTES.get("/v1/invoices/{id}", answers={200: Invoice}, on=Invoice)
async def get_invoice(request: web.Request) -> web.Response:
    """An invoice with its payment requests, payments and credit notes."""
    return web.json_response(await invoices.get_invoice(
        services(request).pool, path_id(request), urls=books(request)))


@ROUTES.post("/v1/invoices/{id}/send", body=SendIn, body_required=False,
             answers={200: Invoice}, on=Invoice, errors={409: ("invoice_void",)})
async def send_invoice(request: web.Request) -> web.Response:
    """Send an invoice: it is now open, with auto_apply_credit the customer's credit is
    applied at once, and unless `mail` is false the customer is mailed it (`invoice_sent`,
    its page link and its PDF attached). Sending it again changes nothing and mails nothing."""
    data = await body(request, SendIn, optional=True)
    return web.json_response(await invoices.send_invoice(books(request), path_id(request),
                                                         mail=data.mail))


@ROUTES.post("/v1/invoices/{id}/void", answers={200: Invoice}, on=Invoice,
             errors={409: ("invoice_has_payments",)})
async def void_invoice(request: web.Request) -> web.Response:
    """Void an invoice on which no payment was applied or is processing."""
    return web.json_response(await invoices.void_invoice(books(request), path_id(request)))


@ROUTES.post("/v1/invoices/{id}/apply-credit", body=ApplyCreditIn, body_required=False,
             answers={200: Invoice}, on=Invoice, errors={422: ("invoice_not_open", "no_credit")})
async def apply_credit(request: web.Request) -> web.Response:
    """Apply the customer's credit: min(amount, credit balance, remaining)."""
    data = await body(request, ApplyCreditIn, optional=True)
    return web.json_response(await invoices.apply_credit(books(request), path_id(request),
                                                         data.amount))


@ROUTES.post("/v1/invoices/{id}/payment-requests", body=PaymentRequestIn,
             answers={201: PaymentRequest}, on=Invoice,
             refs={"amount": (Invoice, "amount_remaining")},
             errors={409: ("active_request_exists", "processor_not_configured"),
                     422: ("invoice_not_open", "amount_exceeds_remaining",
                           "partial_not_allowed")})
async def create_request(request: web.Request) -> web.Response:
    """Ask for part or all of an invoice through a pay link, mailed to `to`, `cc`, `bcc`.

    One active link per invoice: `replace` cancels the active one in the same step.
    """
    data = await body(request, PaymentRequestIn)
    created = await requests.create_request(books(request), path_id(request), requests.RequestInput(
        amount=data.amount, to=data.to, cc=list(data.cc), bcc=list(data.bcc), note=data.note,
        replace=data.replace), list(services(request).processors.values()))
    return web.json_response(created, status=201)


@ROUTES.get("/v1/payment-requests/{id}", answers={200: PaymentRequest}, on=PaymentRequest)
async def get_request(request: web.Request) -> web.Response:
    """A payment request and its link."""
    return web.json_response(await requests.get_request(
        services(request).pool, path_id(request), urls=books(request)))


@ROUTES.post("/v1/payment-requests/{id}/resend", answers={202: PaymentRequest},
             on=PaymentRequest, errors={409: ("request_not_active",)})
async def resend_request(request: web.Request) -> web.Response:
    """Mail the same link again."""
    return web.json_response(await requests.resend_request(books(request), path_id(request)),
                             status=202)


@ROUTES.post("/v1/payment-requests/{id}/cancel", answers={200: PaymentRequest},
             on=PaymentRequest, errors={409: ("request_not_active",)})
async def cancel_request(request: web.Request) -> web.Response:
    """Cancel a request: its link answers 410 at once (cancelling again changes nothing)."""
    return web.json_response(await requests.cancel_request(books(request), path_id(request)))


def add_routes(app: web.Application) -> None:
    ROUTES.add_to(app)
