"""POST /webhooks/{processor}: verify, record, enqueue, answer (CONTRACT §3).

The processor's package verifies the signature and reads the event's id and
type; this module knows none of its shapes. A delivery is answered `200`
only once its own row is committed.
"""

from __future__ import annotations

import json
import logging
import time

import asyncpg
from aiohttp import web

from core.errors import is_transient
from core.metrics import WEBHOOKS
from core.processor import BadEvent, SignatureError
from handlers.errors import error
from handlers.keys import INTAKE, services

log = logging.getLogger("settle.webhooks")


def _refuse(status: int, code: str, message: str) -> web.Response:
    WEBHOOKS.labels(code).inc()
    log.info("webhook refused", extra={"code": code, "reason": message})
    return error(status, code, message)


async def receive(request: web.Request) -> web.Response:
    processor = services(request).processor
    # Already read, within WEBHOOK_MAX_BYTES and the body's deadline (handlers.bodies).
    body = await request.read()
    try:
        processor.verify(body, request.headers, time.time())
        event = processor.parse(body)
    except SignatureError as bad:
        return _refuse(400, "signature_invalid", str(bad))
    except BadEvent as bad:
        return _refuse(400, "event_invalid", str(bad))

    facts = {"event_id": event.event_id, "type": event.type}
    try:
        pk = await request.app[INTAKE].record(event)
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

    if pk is None:
        WEBHOOKS.labels("duplicate").inc()
        log.info("webhook duplicate", extra=facts)
        return _answer(DUPLICATE)
    WEBHOOKS.labels("accepted").inc()
    log.info("webhook accepted", extra={**facts, "event_pk": pk})
    return _answer(ACCEPTED)


# The two answers, encoded once: every delivery gets one of them.
ACCEPTED = json.dumps({"received": True, "duplicate": False}).encode()
DUPLICATE = json.dumps({"received": True, "duplicate": True}).encode()


def _answer(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


def add_routes(app: web.Application, processor_name: str) -> None:
    app.router.add_post(f"/webhooks/{processor_name}", receive)
