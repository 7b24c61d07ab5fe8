"""The application API for customers and invoices (CONTRACT §5)."""

from __future__ import annotations

from aiohttp import web

from handlers import parse
from handlers.keys import books
from handlers.parse import path_id
from ledger import customers, invoices, requests


async def put_customer(request: web.Request) -> web.Response:
    body = await parse.json_object(request)
    customer, created = await customers.upsert_customer(
        books(request), path_id(request), parse.email(body, "email"),
        parse.optional_string(body, "name"))
    return web.json_response(customer, status=201 if created else 200)


async def get_customer(request: web.Request) -> web.Response:
    return web.json_response(await customers.get_customer(books(request), path_id(request)))


async def put_invoice(request: web.Request) -> web.Response:
    body = await parse.json_object(request)
    data = invoices.InvoiceInput(
        customer_id=parse.string(body, "customer_id", max_length=255),
        number=parse.string(body, "number", max_length=255),
        currency=parse.currency(body),
        total=parse.amount(body, "total", code="total_invalid"),
        due_date=parse.a_date(body, "due_date"),
        kind=parse.choice(body, "kind", ("invoice", "quote_deposit")),
        notify_emails=parse.emails(body, "notify_emails"),
        auto_apply_credit=parse.boolean(body, "auto_apply_credit", True),
    )
    invoice, created = await invoices.upsert_invoice(books(request), path_id(request), data)
    return web.json_response(invoice, status=201 if created else 200)


async def get_invoice(request: web.Request) -> web.Response:
    return web.json_response(await invoices.get_invoice(books(request), path_id(request)))


async def send_invoice(request: web.Request) -> web.Response:
    return web.json_response(await invoices.send_invoice(books(request), path_id(request)))


async def void_invoice(request: web.Request) -> web.Response:
    return web.json_response(await invoices.void_invoice(books(request), path_id(request)))


async def apply_credit(request: web.Request) -> web.Response:
    body = await parse.json_object(request, optional=True)
    return web.json_response(await invoices.apply_credit(
        books(request), path_id(request), parse.optional_amount(body, "amount")))


async def create_request(request: web.Request) -> web.Response:
    body = await parse.json_object(request)
    data = requests.RequestInput(
        amount=parse.amount(body, "amount"),
        to=parse.one_or_more_emails(body, "to"),
        cc=list(parse.emails(body, "cc")),
        bcc=list(parse.emails(body, "bcc")),
        note=parse.optional_string(body, "note", max_length=2000),
        replace=parse.boolean(body, "replace", False),
    )
    created = await requests.create_request(books(request), path_id(request), data)
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
