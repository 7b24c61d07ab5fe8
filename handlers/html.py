"""What every customer page shares (CONTRACT §6): rendering through `present`, the
headers that keep a page private and its content to itself, and the check that a
form was sent from settle's own page.

The pages are reached by secret tokens in their paths, so they are never
cached (`no-store`), never framed, send no Referer to another site, and load
nothing from another host: the Content-Security-Policy allows only this
origin's own stylesheet and script, and lets a form lead only here or to a
configured processor's checkout page (a `303` to the chosen processor's page follows
the "Pay" forms and the pay link's choice).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import MultiDictProxy

from core.processor import Processor
from handlers.keys import services
from present.templating import render

# Paths whose answers are customer pages (HTML, private), never the API's JSON.
PAGE_PREFIXES = ("/i/", "/c/", "/pay/")


def is_page(request: web.Request) -> bool:
    return request.path.startswith(PAGE_PREFIXES)


def content_policy(checkout_origins: tuple[str, ...]) -> str:
    forms = " ".join(("'self'", *checkout_origins))
    return ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
            f"connect-src 'self'; form-action {forms}; base-uri 'none'; "
            "frame-ancestors 'none'")


def private_headers(request: web.Request) -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": content_policy(services(request).checkout_origins),
        # same-origin: the browser still sends Origin on our own forms (no-referrer
        # would make it "null"), and no page address ever leaves for another site.
        "Referrer-Policy": "same-origin",
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Cross-Origin-Resource-Policy": "same-origin",
    }


def chosen_way(value: object, ways: dict[str, Processor],
               default: Processor) -> Processor | None:
    """The processor of the way a pay form chose (`way`, CONTRACT §6 "Choosing how to pay"):
    one of the ways offered for the currency (`Services.ways`). A form that names no way
    (a page that offered one way has no buttons to tell them apart) pays through the first
    offered, or the default processor when none is, which then answers that the invoice
    cannot be paid online. None for a way not offered, or a value that is no way at all."""
    if value is None:
        return next(iter(ways.values()), default)
    if not isinstance(value, str):  # an uploaded file, say: never a way
        return None
    return ways.get(value)


def respond(request: web.Request, template: str, status: int = 200,
            **context: Any) -> web.Response:
    """A page rendered from `present/templates/pages`, with the private headers."""
    settings = services(request).settings
    body = render(template, merchant=settings.merchant_name,
                  merchant_details=settings.merchant_details,
                  locale=context.pop("locale", None), **context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8",
                        headers=private_headers(request))


def message(request: web.Request, title: str, text: str, status: int, *,
            invoice_url: str | None = None) -> web.Response:
    """A short page that says one thing (not found, gone, try again)."""
    return respond(request, "pages/message.html", status, title=title, text=text,
                   invoice_url=invoice_url)


def unpayable(request: web.Request, invoice_url: str) -> web.Response:
    """An amount the processor will not charge (what remains is below its least charge, or
    the processor refused the session): a 410, as for a link that takes no more payments,
    never a 503. Asking again gets the same answer, so "try again in a few minutes" would
    be a promise broken for ever; the page links the invoice, which still shows what was
    paid and what remains, and the customer is told to settle it with the sender."""
    return message(request, "Cannot be paid online", "This amount cannot be paid online. "
                   "Please contact the sender.", 410, invoice_url=invoice_url)


def see_other(request: web.Request, location: str) -> web.Response:
    return web.Response(status=303, headers={**private_headers(request), "Location": location})


def from_our_page(request: web.Request) -> bool:
    """Whether a POST was sent by a page of this origin: the protection of every form
    against cross-site requests. The pages set no cookie, so nothing rides along with
    a forged request but its own address; still, only settle's own page may post.

    A browser that says where a request comes from (`Sec-Fetch-Site`) is believed;
    otherwise its `Origin` must be settle's, as PUBLIC_URL or the Host it was sent to.
    A request saying neither is refused.
    """
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None:
        return site == "same-origin"
    origin = request.headers.get("Origin")
    if not origin:
        return False
    public = urlsplit(services(request).settings.public_url)
    return origin in (f"{public.scheme}://{public.netloc}", f"{request.scheme}://{request.host}")


# What aiohttp raises for a body it cannot read as a form: no boundary or a bad one, a
# part without a name or with a broken header, an unknown transfer encoding (RuntimeError),
# bytes not in the charset (UnicodeDecodeError), a charset Python does not know
# (LookupError). All of them are the sender's doing; an unreachable disk (OSError) is not.
UNREADABLE = (ValueError, LookupError, RuntimeError, HttpProcessingError)


async def read_form(request: web.Request) -> MultiDictProxy[Any] | None:
    """The form a page posted, or None when its body cannot be read as one (the caller
    answers `unreadable`). A body over the size limit still raises the 413."""
    try:
        return await request.post()
    except UNREADABLE:
        return None


def unreadable(request: web.Request, invoice_url: str) -> web.Response:
    """A 400 page for a form settle cannot read: no page of settle's sends one, so there is
    nothing to show again; nothing was changed."""
    return message(request, "This form could not be read", "Nothing was changed. Please "
                   "open the invoice again and use its buttons.", 400, invoice_url=invoice_url)
