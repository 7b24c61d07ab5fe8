"""The customer's pages (CONTRACT §6): the invoice page and its PDF, its two forms
(pay, use my credit), the customer's page, and their static files.

Only the POSTs change anything, and each answers with a `303` (to Checkout, or
back to the page) or with the page again and the reason it refused. An unknown
token is the one 404 page (`handlers.middleware`); a token is never logged.
"""

from __future__ import annotations

import logging
import mimetypes
from typing import Any

from aiohttp import web

from core.errors import Conflict, Invalid, NotFound, PermanentError, describe
from handlers import html
from handlers.keys import books, services
from handlers.validation import path_token
from ledger import checkout, invoices
from ledger.money import AmountRefused
from present import formats, pdf_store
from present.templating import static_file
from reads import pages
from reads.views import invoice_url

log = logging.getLogger("settle.pages")

# What a refusal answers with: 422 for an amount that is not acceptable, 409 for an
# invoice that no longer takes it.
STATUS = {"partial_not_allowed": 422, "below_minimum": 422, "above_remaining": 422,
          "not_a_number": 422, "ambiguous": 422, "too_many_decimals": 422, "not_positive": 422,
          "too_large": 422, "unpayable": 422, "no_credit": 422, "unknown_way": 422,
          # As many checkout pages as the invoice may make for now (core.limits).
          "too_many_checkouts": 429}


def _token(request: web.Request) -> str:
    token = path_token(request)
    if token is None:
        raise NotFound("page", "…")
    return token


def _session(request: web.Request) -> str | None:
    """The Checkout Session a customer is back from (`?session=`), if it looks like one."""
    value = request.query.get("session", "")
    return value if 0 < len(value) <= 255 and value.isascii() and value.isprintable() \
        and " " not in value else None


def _invoice(request: web.Request, token: str, page: dict[str, Any], *, status: int = 200,
             problem: dict[str, Any] | None = None, typed: str | None = None,
             notice: str | None = None) -> web.Response:
    invoice = page["invoice"]
    # The ways the customer may pay (one: the page looks as it did before there was a
    # choice; several: each form's button becomes one per way).
    offered = services(request).ways(invoice["currency"])
    # A rest a processor will not charge (0.30 USD) is not offered that way: its button
    # would only lead to the "cannot be paid online" page.
    rest_ways = [way for way, processor in offered.items()
                 if processor.amount_refused(invoice["amount_remaining"],
                                             invoice["currency"]) is None]
    return html.respond(request, "pages/invoice.html", status, page=page, path=f"/i/{token}",
                        can_pay=bool(offered), rest_refused=bool(offered) and not rest_ways,
                        ways=list(offered), rest_ways=rest_ways,
                        locale=page["customer"]["locale"], problem=problem, typed=typed,
                        notice=notice)


async def invoice_page(request: web.Request) -> web.Response:
    token = _token(request)
    page = await pages.invoice_page(services(request).pool, token, _session(request),
                                    urls=books(request))
    notice = "credit" if request.query.get("done") == "credit" else None
    return _invoice(request, token, page, notice=notice)


async def invoice_pdf(request: web.Request) -> web.Response:
    token = _token(request)
    page = await pages.invoice_page(services(request).pool, token, None,
                                    urls=books(request))
    settings = services(request).settings
    try:
        # Made once per state of the invoice, off the event loop, a few at a time.
        body = await pdf_store.STORE.invoice_pdf(page, settings.merchant_name,
                                                 settings.merchant_details,
                                                 page["customer"]["locale"])
    except pdf_store.Busy:
        # The request is sound and the server only busy for a moment: 503 with a time to
        # come back (a 429 would blame this customer for others' PDFs).
        busy = html.message(request, "Please try again shortly", "Many documents are being "
                            "prepared right now. Please try again in a few seconds.", 503,
                            invoice_url=_page_url(request, token))
        busy.headers["Retry-After"] = "5"
        return busy
    return web.Response(body=body, content_type="application/pdf", headers={
        **html.private_headers(request),
        "Content-Disposition": f'inline; filename="{page["pdf_name"]}"'})


def _refused(request: web.Request) -> web.Response:
    return html.message(request, "Please use the invoice page",
                        "This form must be sent from the invoice page itself. Please open "
                        "the invoice again and use its buttons.", 403)


def _page_url(request: web.Request, token: str) -> str:
    return invoice_url(books(request).public_url, token)


async def _unreadable(request: web.Request, token: str) -> web.Response:
    # An unknown token is the 404 page.
    await pages.invoice_id_of(services(request).pool, token)
    return html.unreadable(request, _page_url(request, token))


async def _again(request: web.Request, token: str, problem: dict[str, Any],
                 typed: str | None = None) -> web.Response:
    """The invoice page again, saying why it refused."""
    page = await pages.invoice_page(services(request).pool, token, None,
                                    urls=books(request))
    return _invoice(request, token, page, status=STATUS.get(problem["code"], 409),
                    problem=problem, typed=typed)


async def pay(request: web.Request) -> web.Response:
    """"Pay the rest" or "Pay another amount", by the way chosen (`way`, when the page
    offered several): a 303 to that processor's page."""
    token = _token(request)
    if not html.from_our_page(request):
        return _refused(request)
    form = await html.read_form(request)
    if form is None:
        return await _unreadable(request, token)
    found = services(request)
    processor = html.chosen_way(form.get("way"), found.ways(
        await pages.currency_of(found.pool, token)), found.processor)
    chosen: int | None = None
    typed: str | None = None
    if form.get("what") == "amount":
        typed = str(form.get("amount", ""))[:64]
    if processor is None:
        return await _again(request, token, {"code": "unknown_way", "field": None}, typed)
    if typed is not None:
        page = await pages.invoice_page(found.pool, token, None, urls=found.books)
        invoice, locale = page["invoice"], page["customer"]["locale"]
        try:
            chosen = formats.parse_amount(typed, invoice["currency"], locale)
        except AmountRefused as refused:
            return _invoice(request, token, page, status=422, typed=typed, problem={
                "code": refused.code, "field": "amount"})
    try:
        made = await checkout.pay_on_page(found.books, token, processor,
                                          found.checkout_permit, chosen)
    except PermanentError as refused:
        # The processor said no to this session for good: the customer is told so (never
        # a 500), an operator is told why.
        log.error("payment refused by the processor",
                  extra={"error": describe(refused), "processor": processor.name})
        if chosen is None:
            return html.unpayable(request, _page_url(request, token))
        return await _again(request, token, {"code": "unpayable", "field": "amount",
                                             "detail": None}, typed)
    if isinstance(made, checkout.Redirect):
        return html.see_other(request, made.url)
    if isinstance(made, checkout.Limited):
        return await _again(request, token, {"code": "too_many_checkouts", "field": None},
                            typed)
    if isinstance(made, checkout.Gone) and made.reason == "unpayable":
        # "Pay the rest" of a rest the processor will not charge: as its pay link answers.
        return html.unpayable(request, made.invoice_url)
    if isinstance(made, checkout.Refused):
        return await _again(request, token, {
            "code": made.reason, "field": "amount" if chosen is not None else None,
            "detail": made.detail}, typed)
    return await _again(request, token, {"code": made.reason, "field": None}, typed)


async def use_credit(request: web.Request) -> web.Response:
    """"Use my credit": applies min(balance, remaining), then the page again."""
    token = _token(request)
    if not html.from_our_page(request):
        return _refused(request)
    # The form has no fields, but a body no page of settle's sends is refused all the same.
    if await html.read_form(request) is None:
        return await _unreadable(request, token)
    invoice_id = await pages.invoice_id_of(services(request).pool, token)
    try:
        # The ledger's own credit code: the invoice row locked first, then the balance.
        await invoices.apply_credit(books(request), invoice_id, None)
    except (Invalid, Conflict) as refused:
        return await _again(request, token, {"code": refused.code, "field": None})
    return html.see_other(request, f"/i/{token}?done=credit")


async def back_to_page(request: web.Request) -> web.Response:
    """A GET of a form's address (a page opened again from the browser's history): the
    invoice page, where the form is; nothing is changed."""
    token = _token(request)
    # An unknown token is the 404 page.
    await pages.invoice_id_of(services(request).pool, token)
    return html.see_other(request, f"/i/{token}")


async def customer_page(request: web.Request) -> web.Response:
    page = await pages.customer_page(services(request).pool, _token(request),
                                     urls=books(request))
    return html.respond(request, "pages/customer.html", page=page, most=pages.MOST,
                        locale=page["customer"]["locale"])


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    content = static_file(name)
    if content is None:
        raise web.HTTPNotFound()
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    # Addressed by a digest of their content (`asset_url`): cached for a year.
    return web.Response(body=content, content_type=kind, charset="utf-8", headers={
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff"})


def add_routes(app: web.Application) -> None:
    # The PDF first: "/i/{token}" would otherwise take "x.pdf" as a token.
    app.router.add_get("/i/{token}.pdf", invoice_pdf)
    app.router.add_get("/i/{token}", invoice_page)
    app.router.add_post("/i/{token}/pay", pay)
    app.router.add_post("/i/{token}/credit", use_credit)
    app.router.add_get("/i/{token}/pay", back_to_page)
    app.router.add_get("/i/{token}/credit", back_to_page)
    app.router.add_get("/c/{token}", customer_page)
    app.router.add_get("/static/{name}", static)
