"""Side effects owed after a commit: performed from their outbox row, with its key.

The row is locked while its effect is performed (`for update skip locked`, so
two workers never perform one row at once) and marked done in the same
transaction; if the worker dies in between, the effect is tried again with
the same idempotency key, which the processor answers with the first result.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import stripe
from arq import Retry

from jobs.events import backoff
from ledger.checkout import session_finished
from ledger.inbox import is_transient
from worker.context import WorkerContext
from worker.processor import is_transient_stripe_error

log = logging.getLogger("settle.outbox")


class NotPossible(Exception):
    """The effect cannot be performed as configured; recorded, not retried."""


Performer = Callable[[WorkerContext, dict[str, Any], str], Awaitable[dict[str, Any]]]


async def refund_through_processor(ctx: WorkerContext, payload: dict[str, Any],
                                   key: str) -> dict[str, Any]:
    client = ctx.get("stripe")
    if client is None:
        raise NotPossible("STRIPE_API_KEY is not set")
    refund = await client.v1.refunds.create_async(
        {"payment_intent": payload["payment_intent"], "amount": payload["amount"],
         "metadata": {"settle_reason": payload.get("reason", "")}},
        {"idempotency_key": key},
    )
    return {"refund_id": refund.id, "status": refund.status}


async def expire_session(ctx: WorkerContext, payload: dict[str, Any], key: str) -> dict[str, Any]:
    """Expire an open Checkout Session; one that is no longer open counts as done."""
    client = ctx.get("stripe")
    if client is None:
        raise NotPossible("STRIPE_API_KEY is not set")
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


PERFORMERS: dict[str, Performer] = {
    "stripe_refund": refund_through_processor,
    "stripe_expire_session": expire_session,
}


async def deliver_outbox(ctx: WorkerContext, outbox_id: int) -> str:
    retry_after: float | None = None
    async with ctx["pool"].acquire() as conn, conn.transaction():
        row = await conn.fetchrow(
            """select id, kind, key, payload, attempts from outbox
               where id = $1 and status = 'pending' for update skip locked""",
            outbox_id,
        )
        if row is None:
            return "not pending"
        perform = PERFORMERS.get(row["kind"])
        try:
            if perform is None:
                raise NotPossible(f"no performer for {row['kind']}")
            result = await perform(ctx, row["payload"], row["key"])
        except Exception as exc:
            reason = f"{exc.__class__.__name__}: {exc}"[:500]
            if is_transient(exc) or is_transient_stripe_error(exc):
                await conn.execute(
                    "update outbox set attempts = attempts + 1, reason = $2 where id = $1",
                    outbox_id, reason)
                retry_after = backoff(row["attempts"] + 1)
                log.warning("side effect deferred", extra={"outbox_id": outbox_id,
                                                           "kind": row["kind"], "reason": reason})
            else:
                await conn.execute(
                    """update outbox set status = 'failed', attempts = attempts + 1, reason = $2,
                              done_at = now() where id = $1""",
                    outbox_id, reason)
                log.error("side effect failed", extra={"outbox_id": outbox_id,
                                                       "kind": row["kind"], "reason": reason})
                return "failed"
        else:
            await conn.execute(
                """update outbox set status = 'done', attempts = attempts + 1, result = $2,
                          reason = null, done_at = now() where id = $1""",
                outbox_id, json.dumps(result))
            log.info("side effect done", extra={"outbox_id": outbox_id, "kind": row["kind"]})
            return "done"
    raise Retry(defer=retry_after)
