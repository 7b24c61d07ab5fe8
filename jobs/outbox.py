"""Side effects owed after a commit: claim the row, perform the effect, record it.

The claim is a committed lease (`ledger.outbox.claim`), so the effect runs
with no transaction open and no row lock held: a slow mail server or
processor delays only its own row. The outcome is recorded in a new, short
statement. A worker that dies mid-effect leaves the lease to expire, and the
effect is tried again under the same key (the processor's idempotency key,
the mail's Message-ID). Every attempt runs within a budget shorter than the
job's timeout, so a hung server is an attempt that counts, with backoff.

A performer raises `PermanentError` for a failure that will not pass
(recorded, not retried); anything else is retried with backoff for up to
GIVE_UP_AFTER, then recorded as failed (listed for operators, retryable).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from arq import Retry

from core import metrics
from core.errors import PermanentError, describe
from core.retry import backoff
from core.services import Services, WorkerContext
from ledger import outbox
from ledger.checkout import session_finished
from notify import render

log = logging.getLogger("settle.outbox")

GIVE_UP_AFTER = timedelta(hours=24)

# What a performer is given: the services, the row's payload and key, how long it may
# take, and a way to record success early (a mail, the moment the server accepts it).
Record = Callable[[dict[str, Any]], Awaitable[None]]
Performer = Callable[[Services, dict[str, Any], str, float, Record],
                     Awaitable[dict[str, Any]]]


def _processor(services: Services, payload: dict[str, Any]) -> Services:
    if payload.get("processor", services.processor.name) != services.processor.name:
        raise PermanentError(f"no processor {payload['processor']!r} is configured")
    return services


async def refund_through_processor(services: Services, payload: dict[str, Any], key: str,
                                   budget: float, record: Record) -> dict[str, Any]:
    async with asyncio.timeout(budget):
        refund = await _processor(services, payload).processor.refund(
            payload["payment_id"], payload["amount"], key,
            {"settle_reason": payload.get("reason", "")})
    return {"refund_id": refund.id, "status": refund.status}


async def expire_checkout(services: Services, payload: dict[str, Any], key: str,
                          budget: float, record: Record) -> dict[str, Any]:
    """Expire an open checkout session; one that is no longer open counts as done."""
    session_id = payload["session_id"]
    async with asyncio.timeout(budget):
        status = await _processor(services, payload).processor.expire_checkout(session_id, key)
    async with services.pool.acquire() as conn:
        await session_finished(conn, session_id, status)
    return {"session_id": session_id, "status": status}


async def send_email(services: Services, payload: dict[str, Any], key: str, budget: float,
                     record: Record) -> dict[str, Any]:
    settings = services.settings
    message = render.render(payload, key, settings.mail_from)
    recipients = list(dict.fromkeys(payload["to"] + payload["cc"] + payload["bcc"]))
    result = {"message_id": message["Message-ID"]}

    async def accepted(response: str) -> None:
        await record({**result, "response": response})

    try:
        response = await services.mailer.send(message, recipients, accepted, budget=budget)
    except PermanentError:
        await metrics.record_email(services.queue, settings.queue_name, payload["kind"], "failed")
        raise
    except Exception:
        await metrics.record_email(services.queue, settings.queue_name, payload["kind"],
                                   "deferred")
        raise
    await metrics.record_email(services.queue, settings.queue_name, payload["kind"], "sent")
    return {**result, "response": response}


PERFORMERS: dict[str, Performer] = {
    "refund": refund_through_processor,
    "expire_checkout": expire_checkout,
    "email": send_email,
}


async def deliver_outbox(ctx: WorkerContext, outbox_id: int) -> str:
    services = ctx["services"]
    pool, settings = services.pool, services.settings
    # The lease outlives any attempt: each runs within `budget`, inside the job's timeout.
    budget = max(1.0, settings.job_timeout_seconds - 2.0)
    row = await outbox.claim(pool, outbox_id, lease=settings.job_timeout_seconds + 10.0)
    if row is None:
        return "not pending"
    facts = {"outbox_id": outbox_id, "kind": row["kind"], "attempt": row["attempts"]}
    recorded = False

    async def record(result: dict[str, Any]) -> None:
        nonlocal recorded
        recorded = await outbox.record_done(pool, outbox_id, result) or recorded

    try:
        perform = PERFORMERS.get(row["kind"])
        if perform is None:
            raise PermanentError(f"no performer for {row['kind']}")
        result = await perform(services, row["payload"], row["key"], budget, record)
    except Exception as exc:
        if recorded:  # it happened; what failed after (a QUIT, say) changes nothing
            log.info("side effect done", extra=facts)
            return "done"
        reason = describe(exc)
        too_old = datetime.now(UTC) - row["created_at"] > GIVE_UP_AFTER
        if isinstance(exc, PermanentError) or too_old:
            await outbox.record_failed(pool, outbox_id, reason)
            log.error("side effect failed", extra={**facts, "reason": reason})
            return "failed"
        delay = backoff(row["attempts"])
        await outbox.record_deferred(pool, outbox_id, reason, delay)
        log.warning("side effect deferred", extra={**facts, "reason": reason})
        raise Retry(defer=delay) from exc
    await record(result)
    log.info("side effect done", extra=facts)
    return "done"
