"""Side effects owed after a commit: performed from their outbox row, with its key.

The row is locked while its effect is performed (`for update skip locked`, so
two workers never perform one row at once) and marked done in the same
transaction; if the worker dies in between, the effect is tried again with
the same key (the processor's idempotency key, the mail's Message-ID).

A performer raises `PermanentError` for a failure that will not pass
(recorded, not retried); anything else is retried with backoff, for up to
GIVE_UP_AFTER (from when it was owed, or from an operator's retry).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry

from core import metrics
from core.errors import PermanentError, describe
from core.retry import backoff
from core.services import Services, WorkerContext
from ledger.checkout import session_finished
from notify import render, smtp

log = logging.getLogger("settle.outbox")

GIVE_UP_AFTER = timedelta(hours=24)


Performer = Callable[[Services, dict[str, Any], str], Awaitable[dict[str, Any]]]


def _processor(services: Services, payload: dict[str, Any]) -> Services:
    if payload.get("processor", services.processor.name) != services.processor.name:
        raise PermanentError(f"no processor {payload['processor']!r} is configured")
    return services


async def refund_through_processor(services: Services, payload: dict[str, Any],
                                   key: str) -> dict[str, Any]:
    refund = await _processor(services, payload).processor.refund(
        payload["payment_id"], payload["amount"], key,
        {"settle_reason": payload.get("reason", "")})
    return {"refund_id": refund.id, "status": refund.status}


async def expire_checkout(services: Services, payload: dict[str, Any],
                          key: str) -> dict[str, Any]:
    """Expire an open checkout session; one that is no longer open counts as done."""
    session_id = payload["session_id"]
    status = await _processor(services, payload).processor.expire_checkout(session_id, key)
    async with services.pool.acquire() as conn:
        await session_finished(conn, session_id, status)
    return {"session_id": session_id, "status": status}


async def send_email(services: Services, payload: dict[str, Any], key: str) -> dict[str, Any]:
    settings = services.settings
    message = render.render(payload, key, settings.mail_from)
    recipients = list(dict.fromkeys(payload["to"] + payload["cc"] + payload["bcc"]))
    try:
        response = await smtp.send(message, recipients, settings)
    except PermanentError:
        await metrics.record_email(services.queue, settings.queue_name, payload["kind"], "failed")
        raise
    except Exception:
        await metrics.record_email(services.queue, settings.queue_name, payload["kind"],
                                   "deferred")
        raise
    await metrics.record_email(services.queue, settings.queue_name, payload["kind"], "sent")
    return {"message_id": message["Message-ID"], "response": response}


PERFORMERS: dict[str, Performer] = {
    "refund": refund_through_processor,
    "expire_checkout": expire_checkout,
    "email": send_email,
}


async def deliver_outbox(ctx: WorkerContext, outbox_id: int) -> str:
    retry_after: float | None = None
    async with ctx["services"].pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """select id, kind, key, payload, attempts, created_at, retried_at from outbox
               where id = $1 and status = 'pending' for update skip locked""",
            outbox_id,
        )
        if row is None:
            return "not pending"
        facts = {"outbox_id": outbox_id, "kind": row["kind"]}
        try:
            perform = PERFORMERS.get(row["kind"])
            if perform is None:
                raise PermanentError(f"no performer for {row['kind']}")
            result = await perform(ctx["services"], row["payload"], row["key"])
        except Exception as exc:
            reason = describe(exc)
            # An operator's retry (ledger.backlog.retry_outbox) starts the clock again.
            tried_since = row["retried_at"] or row["created_at"]
            too_old = datetime.now(UTC) - tried_since > GIVE_UP_AFTER
            if isinstance(exc, PermanentError) or too_old:
                await conn.execute(
                    """update outbox set status = 'failed', attempts = attempts + 1, reason = $2,
                              done_at = now() where id = $1""",
                    outbox_id, reason)
                log.error("side effect failed", extra={**facts, "reason": reason})
                return "failed"
            await conn.execute(
                "update outbox set attempts = attempts + 1, reason = $2 where id = $1",
                outbox_id, reason)
            retry_after = backoff(row["attempts"] + 1)
            log.warning("side effect deferred", extra={**facts, "reason": reason})
        else:
            await conn.execute(
                """update outbox set status = 'done', attempts = attempts + 1, result = $2,
                          reason = null, done_at = now() where id = $1""",
                outbox_id, json.dumps(result))
            log.info("side effect done", extra=facts)
            return "done"
    raise Retry(defer=retry_after)
