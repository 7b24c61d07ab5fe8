"""GET /pay/{token}: to Checkout while the link is active, else a short 410 page that
links the invoice page (CONTRACT §6)."""

from __future__ import annotations

import logging

from aiohttp import web

from core.errors import NotFound, PermanentError, describe, is_transient
from handlers import html
from handlers.keys import services
from handlers.validation import path_token
from ledger import checkout
from reads import pages

log = logging.getLogger("settle.paylinks")

# What a customer reads when a link no longer takes payments, by reason.
GONE = {
    "paid": ("Already paid", "This payment link has already been paid. Thank you."),
    "cancelled": ("Link cancelled",
                  "This payment link was cancelled by the sender. Please ask them for a new one."),
    "superseded": ("Invoice paid",
                   "This invoice has been paid in full, so this link is no longer needed. "
                   "Nothing more is due."),
    "void": ("Invoice withdrawn", "This invoice was withdrawn by the sender. Nothing is due."),
    "draft": ("Not ready", "This invoice has not been sent yet."),
    "no_processor": ("Cannot be paid online",
                     "Online payment is not available right now. Please contact the sender."),
}


def _token(request: web.Request) -> str:
    token = path_token(request)
    if token is None:
        raise NotFound("pay link", "…")
    return token


async def open_link(request: web.Request) -> web.Response:
    token = _token(request)
    found = services(request)
    try:
        result = await checkout.open_link(found.books, token, found.processor,
                                         found.checkout_permit)
    except NotFound:
        raise
    except PermanentError as refused:
        # The processor said no to this session for good (an amount its rules refuse that
        # settle's table does not know, a key it does not accept): worth an operator's eye.
        log.error("pay link refused by the processor", extra={"error": describe(refused)})
        return html.unpayable(request, await pages.invoice_url_of_link(
            found.pool, token, urls=found.books))
    except Exception as exc:  # Stripe or the database unreachable: the customer can retry
        # Never the token: it is the link's secret. A traceback only for the unexpected.
        if is_transient(exc):
            log.warning("pay link unavailable", extra={"error": exc.__class__.__name__})
        else:
            log.exception("pay link unavailable", extra={"error": exc.__class__.__name__})
        return html.message(request, "Please try again", "Payments are unavailable for a "
                            "moment. Please try again in a few minutes.", 503)
    if isinstance(result, checkout.Limited):
        return html.message(request, "Please try again shortly", "This invoice was opened for "
                            "payment many times in the last few minutes. Please try again "
                            "in a few minutes.", 429, invoice_url=result.invoice_url)
    if isinstance(result, checkout.Gone) and result.reason == "unpayable":
        return html.unpayable(request, result.invoice_url)
    if isinstance(result, checkout.Gone):
        title, text = GONE.get(result.reason, GONE["cancelled"])
        return html.message(request, title, text, 410, invoice_url=result.invoice_url)
    return html.see_other(request, result.url)


async def done(request: web.Request) -> web.Response:
    """Where Checkout Sessions made before the invoice page existed came back to: on to
    the invoice page."""
    return html.see_other(request, await pages.invoice_url_of_link(
        services(request).pool, _token(request), urls=services(request).books))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/pay/{token}", open_link)
    app.router.add_get("/pay/{token}/done", done)
