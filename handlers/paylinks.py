"""GET /pay/{token}: to Stripe Checkout while the link is active, else a plain 410 (§6)."""

from __future__ import annotations

import html
import logging

from aiohttp import web

from core.errors import NotFound, is_transient
from handlers.keys import services
from handlers.validation import path_token
from ledger import checkout

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
    "unpayable": ("Cannot be paid online",
                  "This amount cannot be paid online. Please contact the sender."),
}


def page(title: str, text: str, status: int) -> web.Response:
    body = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)}</title></head>"
        "<body style=\"font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;"
        " padding: 0 1rem; line-height: 1.5\">"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(text=body, status=status, content_type="text/html",
                        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})


async def open_link(request: web.Request) -> web.StreamResponse:
    try:
        token = path_token(request)
        if token is None:
            raise NotFound("pay link", "…")
        found = services(request)
        result = await checkout.open_link(found.books, token, found.processor)
    except NotFound:
        return page("Link not found", "This payment link does not exist. Please check the "
                    "address, or ask the sender for a new link.", 404)
    except Exception as exc:  # Stripe or the database unreachable: the customer can retry
        # Never the token: it is the link's secret. A traceback only for the unexpected.
        if is_transient(exc):
            log.warning("pay link unavailable", extra={"error": exc.__class__.__name__})
        else:
            log.exception("pay link unavailable", extra={"error": exc.__class__.__name__})
        return page("Please try again", "Payments are unavailable for a moment. Please try "
                    "again in a few minutes.", 503)
    if isinstance(result, checkout.Gone):
        title, text = GONE.get(result.reason, GONE["cancelled"])
        return page(title, text, 410)
    raise web.HTTPSeeOther(result.url, headers={"Cache-Control": "no-store"})


async def done(request: web.Request) -> web.Response:
    return page("Thank you", "Your payment was received and is being processed. You will get "
                "a receipt by email.", 200)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/pay/{token}", open_link)
    app.router.add_get("/pay/{token}/done", done)
