"""Bearer tokens for /v1, domain errors mapped to the contract's error bodies, and the
last word on anything else."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from core.errors import DomainError, NotFound, is_transient
from handlers import html
from handlers.errors import error
from handlers.keys import services
from handlers.routes import CATALOGUE

log = logging.getLogger("settle.http")


def token_accepted(header: str | None, tokens: tuple[str, ...]) -> bool:
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    # aiohttp gives header bytes that are not UTF-8 as lone surrogates (surrogateescape).
    # "surrogatepass" encodes any of them as bytes valid UTF-8 never holds, so such a
    # header is compared like any other and matches no UTF-8 token: no exception (a 500),
    # no early exit. The tokens are encoded alike, so one from the environment never raises.
    offered = token.strip().encode("utf-8", "surrogatepass")
    matched = False
    for accepted in tokens:
        # Every token is compared, each in constant time: no early exit to time.
        matched |= hmac.compare_digest(offered, accepted.encode("utf-8", "surrogatepass"))
    return matched


@web.middleware
async def api_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/") and request.path not in request.app[CATALOGUE].public \
            and not token_accepted(request.headers.get("Authorization"),
                                   services(request).settings.api_tokens):
        return error(401, "unauthorized", "a valid bearer token is required")
    return await handler(request)


@web.middleware
async def domain_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except (NotFound, web.HTTPNotFound) as failure:
        if html.is_page(request):
            return not_found_page(request)
        if isinstance(failure, NotFound):
            return error(failure.status, failure.code, failure.message)
        return error(404, "not_found", "no such route")
    except DomainError as failure:
        return error(failure.status, failure.code, failure.message)
    except web.HTTPRequestEntityTooLarge as refused:
        if html.is_page(request):  # private like every answer there (no-store)
            return html.message(request, "Too much was sent", "This form sent more than "
                                "a page of settle's ever does. Nothing was changed.", 413)
        return error(413, "payload_too_large", refused.text or "the body is too large")
    except web.HTTPMethodNotAllowed as refused:
        if html.is_page(request):
            return html.message(request, "Not here", "This address does not take that "
                                "kind of request.", 405)
        answer = error(405, "method_not_allowed", "method not allowed on this route")
        answer.headers["Allow"] = ", ".join(sorted(refused.allowed_methods))
        return answer


def not_found_page(request: web.Request) -> web.Response:
    """An unknown token (or any address under a page's path): one page for all, so it
    says nothing about which tokens exist."""
    return html.message(request, "Page not found", "This address does not lead to an "
                        "invoice. Please check it, or ask the sender for a new link.", 404)


def route_of(request: web.Request) -> str:
    """The route's pattern (`/pay/{token}`), never the path: a path may hold a token."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


@web.middleware
async def unexpected_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What no handler answered: the one place it is logged, and answered in the
    contract's shape without the exception's text (which may hold anything).

    Trouble that passes by itself (`is_transient`: the database refusing
    connections, Redis away) is expected: one warning line and a 503. Anything
    else is a bug: its traceback, once, and a 500. aiohttp never sees either,
    so it logs nothing more.
    """
    try:
        return await handler(request)
    except web.HTTPException:
        raise  # an answer (a redirect, a 404), not an error
    except Exception as exc:
        facts = {"method": request.method, "route": route_of(request),
                 "error": exc.__class__.__name__}
        if is_transient(exc):
            log.warning("request failed: unavailable", extra=facts)
            if html.is_page(request):
                return html.message(request, "Please try again", "This page is unavailable "
                                    "for a moment. Please try again in a few minutes.", 503)
            return error(503, "unavailable", "a service settle needs did not answer; "
                         "retry later")
        log.exception("request failed: unexpected error", extra=facts)
        if html.is_page(request):
            return html.message(request, "Something went wrong", "This page could not be "
                                "shown. The problem was logged; please try again later.", 500)
        return error(500, "internal", "an unexpected error occurred; it has been logged")


async def without_server(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """No `Server` header: it names the language and aiohttp's version to anyone who asks,
    which helps no client and every scanner. aiohttp (3.14) sets it while preparing the
    headers, just before this hook runs, so it is taken out here, for every answer
    (static files, redirects, 404s and webhooks alike)."""
    response.headers.popall("Server", None)
