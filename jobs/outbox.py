"""Side effects owed after a commit: performed from their outbox row, with its key.

The row is locked while its effect is performed (`for update skip locked`, so
two workers never perform one row at once) and marked done in the same
transaction; if the worker dies in between, the effect is tried again with
the same key (Stripe's Idempotency-Key, the mail's Message-ID).

A performer raises `NotPossible` for a failure that will not pass (recorded,
not retried); anything else is retried with backoff, for up to GIVE_UP_AFTER.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from arq import Retry

from ledger.checkout import session_finished
from notify import render, smtp
from worker import metrics
from worker.context import WorkerContext
from worker.processor import is_transient_stripe_error

log = logging.getLogger("settle.outbox")

GIVE_UP_AFTER = timedelta(hours=24)


class NotPossible(Exception):
    """The effect cannot be performed; recorded, not retried."""


Performer = Callable[[WorkerContext, dict[str, Any], str], Awaitable[dict[str, Any]]]


def _client(ctx: WorkerContext) -> stripe.StripeClient:
    client = ctx.get("stripe")
    if client is None:
        raise NotPossible("STRIPE_API_KEY is not set")
    return client


async def refund_through_processor(ctx: WorkerContext, payload: dict[str, Any],
                                   key: str) -> dict[str, Any]:
    try:
        refund = await _client(ctx).v1.refunds.create_async(
            {"payment_intent": payload["payment_intent"], "amount": payload["amount"],
             "metadata": {"settle_reason": payload.get("reason", "")}},
            {"idempotency_key": key},
        )
    except stripe.StripeError as error:
        if is_transient_stripe_error(error):
            raise
        raise NotPossible(f"{error.__class__.__name__}: {error.user_message or error}") from error
    return {"refund_id": refund.id, "status": refund.status}


async def expire_session(ctx: WorkerContext, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """Expire an open Checkout Session; one that is no longer open counts as done."""
    client = _client(ctx)
    session_id = payload["session_id"]
    try:
        session = await client.v1.checkout.sessions.expire_async(
            session_id, options={"idempotency_key": key})
    except stripe.InvalidRequestError:
        # Stripe refuses to expire a session that is complete or already expired.
        session = await client.v1.checkout.sessions.retrieve_async(session_id)
        if session.status == "open":
            raise
    async with ctx["pool"].acquire() as conn:
        await session_finished(conn, session_id, session.status or "expired")
    return {"session_id": session_id, "status": session.status}


async def send_email(ctx: WorkerContext, payload: dict[str, Any], key: str) -> dict[str, Any]:
    settings = ctx["settings"]
    message = render.render(payload, key, settings.mail_from)
    recipients = list(dict.fromkeys(payload["to"] + payload["cc"] + payload["bcc"]))
    try:
        response = await smtp.send(message, recipients, settings)
    except smtp.Refused as refused:
        await metrics.record_email(ctx["redis"], settings.queue_name, payload["kind"], "failed")
        raise NotPossible(str(refused)) from refused
    except Exception:
        await metrics.record_email(ctx["redis"], settings.queue_name, payload["kind"], "deferred")
        raise
    await metrics.record_email(ctx["redis"], settings.queue_name, payload["kind"], "sent")
    return {"message_id": message["Message-ID"], "response": response}


PERFORMERS: dict[str, Performer] = {
    "stripe_refund": refund_through_processor,
    "stripe_expire_session": expire_session,
    "email": send_email,
}


def backoff(attempts: int) -> float:
    return float(min(2 ** max(attempts - 1, 0), 300))


async def deliver_outbox(ctx: WorkerContext, outbox_id: int) -> str:
    retry_after: float | None = None
    async with ctx["pool"].acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """select id, kind, key, payload, attempts, created_at from outbox
               where id = $1 and status = 'pending' for update skip locked""",
            outbox_id,
        )
        if row is None:
            return "not pending"
        facts = {"outbox_id": outbox_id, "kind": row["kind"]}
        try:
            perform = PERFORMERS.get(row["kind"])
            if perform is None:
                raise NotPossible(f"no performer for {row['kind']}")
            result = await perform(ctx, row["payload"], row["key"])
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {exc}"[:500]
            too_old = datetime.now(UTC) - row["created_at"] > GIVE_UP_AFTER
            if isinstance(exc, NotPossible) or too_old:
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
