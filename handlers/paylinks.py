"""GET /pay/{token}: to the processor's page while the link is active, else a short 410 page
that links the invoice page (CONTRACT §6).

When more than one processor takes the invoice's currency ("Choosing how to pay"), the
`GET` is a page that offers each way as a button of one form, and its `POST` (the same
address, checked to come from settle's own page) goes on to the chosen processor.
"""

from __future__ import annotations

import logging

from aiohttp import web

from core.errors import NotFound, PermanentError, describe, is_transient
from core.processor import Processor
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
    """GET: the choice of how to pay when several processors take the currency, else
    straight to the one that does."""
    token = _token(request)
    found = services(request)
    choice = await _choice(request, token)
    if isinstance(choice, web.Response):
        return choice
    ways = _ways(request, choice)
    if len(ways) > 1:
        return _choose(request, token, choice, list(ways))
    return await _go(request, token, next(iter(ways.values()), found.processor))


async def choose(request: web.Request) -> web.Response:
    """POST: the way the customer chose (`way`), on to its processor's page."""
    token = _token(request)
    if not html.from_our_page(request):
        return html.message(request, "Please use the payment page",
                            "This form must be sent from the payment page itself. Please "
                            "open the payment link again and choose there.", 403)
    found = services(request)
    form = await html.read_form(request)
    if form is None:
        return html.unreadable(request, await pages.invoice_url_of_link(
            found.pool, token, urls=found.books))
    choice = await _choice(request, token)
    if isinstance(choice, web.Response):
        return choice
    ways = _ways(request, choice)
    processor = html.chosen_way(form.get("way"), ways, found.processor)
    if processor is None:
        if not ways:
            return html.message(request, "Cannot be paid online", GONE["no_processor"][1],
                                422, invoice_url=choice.invoice_url)
        return _choose(request, token, choice, list(ways), status=422, unknown_way=True)
    return await _go(request, token, processor)


def _ways(request: web.Request, choice: checkout.Choice) -> dict[str, Processor]:
    """The ways offered for the link: those that would charge its amount (£0.50 is too
    little for a Direct Debit; more than GoCardless collects goes by card). When none
    would, the first that takes the currency, which answers that it cannot be paid online."""
    found = services(request)
    ways = found.ways(choice.currency, choice.amount)
    if ways:
        return ways
    offered = found.ways(choice.currency)
    return dict(list(offered.items())[:1])


async def _choice(request: web.Request, token: str) -> checkout.Choice | web.Response:
    """What the link pays now, or the page that says why it pays nothing (gone: 410; the
    database away: 503, as when the processor is)."""
    try:
        choice = await checkout.link_choice(services(request).books, token)
    except NotFound:
        raise
    except Exception as exc:
        return _unavailable(request, exc, None)
    return _gone(request, choice) if isinstance(choice, checkout.Gone) else choice


def _unavailable(request: web.Request, exc: Exception, processor: str | None) -> web.Response:
    """The processor or the database unreachable: the customer can retry. Never the token
    in the log (it is the link's secret); a traceback only for the unexpected."""
    extra = {"error": exc.__class__.__name__, "processor": processor}
    if is_transient(exc):
        log.warning("pay link unavailable", extra=extra)
    else:
        log.exception("pay link unavailable", extra=extra)
    return html.message(request, "Please try again", "Payments are unavailable for a "
                        "moment. Please try again in a few minutes.", 503)


def _choose(request: web.Request, token: str, choice: checkout.Choice, ways: list[str], *,
            status: int = 200, unknown_way: bool = False) -> web.Response:
    return html.respond(request, "pages/choose.html", status, choice=choice, ways=ways,
                        path=f"/pay/{token}", locale=choice.locale, unknown_way=unknown_way)


def _gone(request: web.Request, result: checkout.Gone) -> web.Response:
    if result.reason == "unpayable":
        return html.unpayable(request, result.invoice_url)
    title, text = GONE.get(result.reason, GONE["cancelled"])
    return html.message(request, title, text, 410, invoice_url=result.invoice_url)


async def _go(request: web.Request, token: str, processor: Processor) -> web.Response:
    """A 303 to the processor's page for the link (its open session, or a new one)."""
    found = services(request)
    try:
        result = await checkout.open_link(found.books, token, processor,
                                         found.checkout_permit)
    except NotFound:
        raise
    except PermanentError as refused:
        # The processor said no to this session for good (an amount its rules refuse that
        # settle's table does not know, a key it does not accept): worth an operator's eye.
        log.error("pay link refused by the processor",
                  extra={"error": describe(refused), "processor": processor.name})
        return html.unpayable(request, await pages.invoice_url_of_link(
            found.pool, token, urls=found.books))
    except Exception as exc:  # the processor or the database unreachable
        return _unavailable(request, exc, processor.name)
    if isinstance(result, checkout.Limited):
        return html.message(request, "Please try again shortly", "This invoice was opened for "
                            "payment many times in the last few minutes. Please try again "
                            "in a few minutes.", 429, invoice_url=result.invoice_url)
    if isinstance(result, checkout.Gone):
        return _gone(request, result)
    return html.see_other(request, result.url)


async def done(request: web.Request) -> web.Response:
    """Where Checkout Sessions made before the invoice page existed came back to: on to
    the invoice page."""
    return html.see_other(request, await pages.invoice_url_of_link(
        services(request).pool, _token(request), urls=services(request).books))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/pay/{token}", open_link)
    app.router.add_post("/pay/{token}", choose)
    app.router.add_get("/pay/{token}/done", done)
