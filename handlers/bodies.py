"""Every request body is read here, before its handler runs (CONTRACT §11).

A body that has not arrived in full within `body_timeout_seconds` is cut off
with `408` and its connection closed: a client sending a byte every few
seconds holds a connection, never a handler, a database connection or the
body's memory for long. aiohttp keeps what was read (`request.read()`, which
`request.post()` and `request.json()` reuse), so handlers read as before.

Bodies anyone may send (webhooks, the pages' forms: no token is checked
before they are read) are also bounded in number: at most `body_reads_max`
read at once per process; one more is answered `503` with `Retry-After` at
once, rather than waiting, so the connections past the bound hold nothing
but aiohttp's small read buffer. The API's bodies are read only after its
token was accepted (`api_auth` runs first), so they take no slot.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from core.metrics import WEBHOOKS
from handlers import html
from handlers.errors import error
from handlers.keys import BODY_READS, services

WEBHOOKS_PREFIX = "/webhooks/"


@web.middleware
async def bodies(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.body_exists:
        return await handler(request)
    settings = services(request).settings
    webhook = request.path.startswith(WEBHOOKS_PREFIX)
    if webhook:
        # The webhook's own limit (WEBHOOK_MAX_BYTES); every other body has aiohttp's
        # client_max_size. Past it, read() raises the 413 (handlers.middleware).
        request = request.clone(client_max_size=settings.webhook_max_bytes)
    slots = request.app[BODY_READS]
    anonymous = not request.path.startswith("/v1/")
    if anonymous and slots.locked():
        return busy(request)
    try:
        async with asyncio.timeout(settings.body_timeout_seconds):
            if anonymous:
                async with slots:
                    await request.read()
            else:
                await request.read()
    except TimeoutError:
        if webhook:
            WEBHOOKS.labels("request_timeout").inc()
        return await timed_out(request)
    except web.HTTPRequestEntityTooLarge:
        if webhook:
            WEBHOOKS.labels("payload_too_large").inc()
        raise
    return await handler(request)


# After a 408, how long the connection stays half-closed before it is closed (see below).
CLOSE_GRACE_SECONDS = 1.0


async def timed_out(request: web.Request) -> web.StreamResponse:
    """The 408, sent, and the connection closed: at once for writing (the client reads
    the answer, then the end), a moment later for reading. Closing both at once while the
    client still sends would reset the connection, and a reset can drop the answer
    before the client reads it. aiohttp would otherwise keep reading the rest of the
    body for up to 10 s more."""
    if html.is_page(request):
        answer = html.message(request, "This took too long", "The form did not arrive in "
                              "time. Nothing was changed; please try again.", 408)
    else:
        answer = error(408, "request_timeout", "the body did not arrive in time")
    answer.force_close()
    await answer.prepare(request)
    await answer.write_eof()
    transport = request.transport
    if transport is not None:
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(CLOSE_GRACE_SECONDS, transport.close)
    return answer


def busy(request: web.Request) -> web.Response:
    if html.is_page(request):
        answer = html.message(request, "Please try again", "This page is busy for a moment. "
                              "Please try again in a few seconds.", 503)
    else:
        answer = error(503, "unavailable", "too many requests are being read; retry shortly")
    answer.headers["Retry-After"] = "1"
    return answer
