"""The application API for customers, invoices and payment requests (CONTRACT §5)."""

from __future__ import annotations

from aiohttp import web

from handlers.keys import books, services
from handlers.models import ApplyCreditIn, CustomerIn, InvoiceIn, PaymentRequestIn
from handlers.validation import body, path_id
from ledger import customers, invoices, requests


async def put_customer(request: web.Request) -> web.Response:
    data = await body(request, CustomerIn)
    customer, created = await customers.upsert_customer(
        books(request), path_id(request), data.email, data.name)
    return web.json_response(customer, status=201 if created else 200)


async def get_customer(request: web.Request) -> web.Response:
    return web.json_response(await customers.get_customer(books(request), path_id(request)))


async def put_invoice(request: web.Request) -> web.Response:
    data = await body(request, InvoiceIn)
    invoice, created = await invoices.upsert_invoice(
        books(request), path_id(request), invoices.InvoiceInput(
            customer_id=data.customer_id, number=data.number, currency=data.currency,
            total=data.total, due_date=data.due_date, kind=data.kind,
            notify_emails=tuple(data.notify_emails), auto_apply_credit=data.auto_apply_credit),
        services(request).processor)
    return web.json_response(invoice, status=201 if created else 200)


async def get_invoice(request: web.Request) -> web.Response:
    return web.json_response(await invoices.get_invoice(books(request), path_id(request)))


async def send_invoice(request: web.Request) -> web.Response:
    return web.json_response(await invoices.send_invoice(books(request), path_id(request)))


async def void_invoice(request: web.Request) -> web.Response:
    return web.json_response(await invoices.void_invoice(books(request), path_id(request)))


async def apply_credit(request: web.Request) -> web.Response:
    data = await body(request, ApplyCreditIn, optional=True)
    return web.json_response(await invoices.apply_credit(books(request), path_id(request),
                                                         data.amount))


async def create_request(request: web.Request) -> web.Response:
    data = await body(request, PaymentRequestIn)
    created = await requests.create_request(books(request), path_id(request), requests.RequestInput(
        amount=data.amount, to=data.to, cc=list(data.cc), bcc=list(data.bcc), note=data.note,
        replace=data.replace), services(request).processor)
    return web.json_response(created, status=201)


async def get_request(request: web.Request) -> web.Response:
    return web.json_response(await requests.get_request(books(request), path_id(request)))


async def resend_request(request: web.Request) -> web.Response:
    return web.json_response(await requests.resend_request(books(request), path_id(request)),
                             status=202)


async def cancel_request(request: web.Request) -> web.Response:
    return web.json_response(await requests.cancel_request(books(request), path_id(request)))


def add_routes(app: web.Application) -> None:
    app.router.add_put("/v1/customers/{id}", put_customer)
    app.router.add_get("/v1/customers/{id}", get_customer)
    app.router.add_put("/v1/invoices/{id}", put_invoice)
    app.router.add_get("/v1/invoices/{id}", get_invoice)
    app.router.add_post("/v1/invoices/{id}/send", send_invoice)
    app.router.add_post("/v1/invoices/{id}/void", void_invoice)
    app.router.add_post("/v1/invoices/{id}/apply-credit", apply_credit)
    app.router.add_post("/v1/invoices/{id}/payment-requests", create_request)
    app.router.add_get("/v1/payment-requests/{id}", get_request)
    app.router.add_post("/v1/payment-requests/{id}/resend", resend_request)
    app.router.add_post("/v1/payment-requests/{id}/cancel", cancel_request)
