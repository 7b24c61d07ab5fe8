"""POST /webhooks/{processor}: verify, record, enqueue, answer (CONTRACT §3, §3a).

Every registered processor has its route and its own intake. The processor's
package verifies the signature and reads the delivery's notices (one or many),
each with its id and type; this module knows none of its shapes. A delivery is
answered `200` only once every notice of it is committed (a duplicate counts as
recorded); a body with any notice that is not well-formed records nothing.
"""

from __future__ import annotations

import json
import logging
import time

import asyncpg
from collections.abc import Awaitable, Callable, Iterable

from aiohttp import web

from core.errors import is_transient
from core.metrics import WEBHOOKS
from core.processor import BadEvent, SignatureError
from handlers.errors import error
from handlers.keys import INTAKES, services

log = logging.getLogger("settle.webhooks")


def _refuse(status: int, code: str, message: str) -> web.Response:
    WEBHOOKS.labels(code).inc()
    log.info("webhook refused", extra={"code": code, "reason": message})
    return error(status, code, message)


async def receive(request: web.Request, name: str) -> web.Response:
    processor = services(request).processors[name]
    # Already read, within WEBHOOK_MAX_BYTES and the body's deadline (handlers.bodies).
    body = await request.read()
    try:
        processor.verify(body, request.headers, time.time())
        events = processor.parse(body)
    except SignatureError as bad:
        return _refuse(processor.signature_refused_status, "signature_invalid", str(bad))
    except BadEvent as bad:
        return _refuse(400, "event_invalid", str(bad))
    if not events:
        return _refuse(400, "event_invalid", "the delivery holds no event")

    facts = {"processor": name, "event_id": events[0].event_id, "type": events[0].type,
             "count": len(events)}
    try:
        pks = await request.app[INTAKES][name].record(events)
    except asyncpg.DataError:
        # What JSON allows and PostgreSQL's jsonb does not (\u0000, NaN...).
        return _refuse(400, "event_invalid", "event cannot be stored as JSON")
    except Exception as exc:
        # The database down is expected now and then: one line. Anything else is a bug
        # worth its traceback. Either way the processor retries on a 503.
        failure = {**facts, "error": exc.__class__.__name__}
        if is_transient(exc):
            log.warning("webhook not recorded", extra=failure)
        else:
            log.exception("webhook not recorded", extra=failure)
        WEBHOOKS.labels("unavailable").inc()
        return error(503, "unavailable", "the event could not be recorded; retry later")

    new = [pk for pk in pks if pk is not None]
    if not new:
        WEBHOOKS.labels("duplicate").inc()
        log.info("webhook duplicate", extra=facts)
        return _answer(DUPLICATE)
    WEBHOOKS.labels("accepted").inc()
    log.info("webhook accepted", extra={**facts, "event_pk": new[0], "new": len(new)})
    return _answer(ACCEPTED)


# The two answers, encoded once: every delivery gets one of them (duplicate: no notice of
# it was new).
ACCEPTED = json.dumps({"received": True, "duplicate": False}).encode()
DUPLICATE = json.dumps({"received": True, "duplicate": True}).encode()


def _answer(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def _receiver(name: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def receive_for(request: web.Request) -> web.Response:
        return await receive(request, name)

    return receive_for


def add_routes(app: web.Application, processor_names: Iterable[str]) -> None:
    """One route per processor: `/webhooks/<name>`."""
    for name in processor_names:
        app.router.add_post(f"/webhooks/{name}", _receiver(name))
