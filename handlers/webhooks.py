"""POST /webhooks/stripe: verify, record, enqueue, answer (CONTRACT §3)."""

from __future__ import annotations

import json
import logging
import time

import asyncpg
from aiohttp import web

from handlers.errors import error
from handlers.signature import SignatureError, verify
from worker.context import INTAKE, SETTINGS
from worker.metrics import WEBHOOKS

log = logging.getLogger("settle.webhooks")

MAX_ID_LENGTH = 255


class BadEvent(ValueError):
    pass


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` (read no further)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_event(body: bytes) -> tuple[str, str, str]:
    """(event id, type, body text) of a Stripe event, or BadEvent."""
    try:
        text = body.decode("utf-8")
        event = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        raise BadEvent("body is not UTF-8 JSON") from None
    if not isinstance(event, dict):
        raise BadEvent("body is not a JSON object")
    event_id, event_type = event.get("id"), event.get("type")
    for name, value in (("id", event_id), ("type", event_type)):
        if not isinstance(value, str) or not 0 < len(value) <= MAX_ID_LENGTH:
            raise BadEvent(f"event has no valid {name}")
    return event_id, event_type, text  # type: ignore[return-value]


def _refuse(status: int, code: str, message: str) -> web.Response:
    WEBHOOKS.labels(code).inc()
    log.info("webhook refused", extra={"code": code, "reason": message})
    return error(status, code, message)


async def receive_stripe(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    body = await read_limited(request, settings.webhook_max_bytes)
    if body is None:
        return _refuse(413, "payload_too_large",
                       f"body over {settings.webhook_max_bytes} bytes")
    try:
        verify(body, request.headers.get("Stripe-Signature"), settings.stripe_webhook_secrets,
               tolerance=settings.webhook_tolerance_seconds, now=time.time())
        event_id, event_type, text = parse_event(body)
    except SignatureError as bad:
        return _refuse(400, "signature_invalid", str(bad))
    except BadEvent as bad:
        return _refuse(400, "event_invalid", str(bad))

    try:
        pk = await request.app[INTAKE].record(event_id, event_type, text)
    except asyncpg.DataError:
        # What JSON allows and PostgreSQL's jsonb does not (\u0000, NaN...).
        return _refuse(400, "event_invalid", "event cannot be stored as JSON")
    except Exception as exc:
        log.warning("webhook not recorded", extra={
            "event_id": event_id, "type": event_type, "error": exc.__class__.__name__})
        WEBHOOKS.labels("unavailable").inc()
        return error(503, "unavailable", "the event could not be recorded; retry later")

    if pk is None:
        WEBHOOKS.labels("duplicate").inc()
        log.info("webhook duplicate", extra={"event_id": event_id, "type": event_type})
        return web.json_response({"received": True, "duplicate": True})
    WEBHOOKS.labels("accepted").inc()
    log.info("webhook accepted", extra={"event_id": event_id, "type": event_type, "event_pk": pk})
    return web.json_response({"received": True, "duplicate": False})
