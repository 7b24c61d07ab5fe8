"""Side effects owed after a commit: claim the row, perform the effect, record it.

The claim is a committed lease (`ledger.outbox.claim`), so the effect runs
with no transaction open and no row lock held: a slow mail server or
processor delays only its own row. The outcome is recorded in a new, short
statement. A worker that dies mid-effect leaves the lease to expire, and the
effect is tried again under the same key (the processor's idempotency key,
the mail's Message-ID). Every attempt's network calls run within a budget
(half the job's timeout), so a hung server is an attempt that counts, with
backoff; the record of what happened has the rest of the job's time, so a
slow database does not turn an effect that happened into one done again.

A performer raises `PermanentError` for a failure that will not pass
(recorded, not retried); anything else is retried with backoff for up to
GIVE_UP_AFTER (from when it was owed, or from an operator's retry), then
recorded as failed (listed for operators, retryable). A refund asks the
processor first whether it happened after all (`LAST_LOOK`), so that a refund
made is never also credited.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import aiohttp
from arq import Retry

from core import mail, metrics
from core.errors import PermanentError, describe, is_transient
from core.processor import Processor, RefundMade
from core.queue import enqueue_again
from core.retry import backoff
from core.services import Services, WorkerContext
from core.settings import Settings
from ledger import endpoints, outbound, outbox, pages, refunds
from ledger.checkout import session_finished
from ledger.reconcile import check_session
from notify import render, webhook

log = logging.getLogger("settle.outbox")

# settle's own: how long an effect is tried before it is given up.
GIVE_UP_AFTER = timedelta(hours=24)
# A processor forgets an idempotency key after its `idempotency_window`: a refund retried
# later than the window less this margin first asks whether it already happened.
KEY_MARGIN = timedelta(hours=1)
# How soon a message for a busy endpoint (no place for it: `notify.webhook.slot`) is looked at
# again.
BUSY_DELAY = (0.5, 2.0)


class Undelivered(Exception):
    """The endpoint did not take the message (no 2xx in time): tried again."""

# What a performer is given: the services, the row's payload and key, how long it may
# take, and a way to record success early (a mail, the moment the server accepts it).
Record = Callable[[dict[str, Any]], Awaitable[None]]
Performer = Callable[[Services, dict[str, Any], str, float, Record],
                     Awaitable[dict[str, Any]]]


def _processor(services: Services, payload: dict[str, Any]) -> Processor:
    """The row's own processor (the one its payment or session went through), whichever
    new checkouts go through now."""
    name = payload.get("processor", services.processor.name)
    processor = services.processor_of(name)
    if processor is None:
        raise PermanentError(f"no processor {name!r} is configured")
    return processor


async def refund_through_processor(services: Services, payload: dict[str, Any], key: str,
                                   budget: float, record: Record) -> dict[str, Any]:
    """Ask the processor for a refund; its answer moves the books (`ledger.refunds`).

    Once the idempotency key may be forgotten, every attempt first asks whether the
    refund already happened: the key lasts the processor's `idempotency_window` (Stripe's
    24 hours), the refund's metadata for ever.
    That is decided by the row's age, never by its attempts: an operator's retry
    (`ledger.backlog.retry_outbox`) counts attempts from 0 again, and the first
    attempt of a row owed long ago (a worker down for a day) is as old.
    """
    processor = _processor(services, payload)
    refund_id = payload.get("refund_id")
    key = payload.get("idempotency_key", key)
    if refund_id is not None:
        async with services.pool.acquire() as conn:
            if await refunds.given_up(conn, refund_id):
                raise PermanentError("the refund was given up and credited instead; "
                                     "ask for a new refund")
    metadata = {"settle_key": key, "settle_refund": refund_id or "",
                "settle_reason": payload.get("reason", "")}
    async with asyncio.timeout(budget):
        made = await processor.find_refund(payload["payment_id"], key) \
            if payload["age"] > processor.idempotency_window - KEY_MARGIN else None
        if made is None:
            made = await processor.refund(payload["payment_id"], payload["amount"], key,
                                          metadata)
    return await _book_answer(services, refund_id, made)


async def _book_answer(services: Services, refund_id: str | None,
                       made: RefundMade) -> dict[str, Any]:
    """The processor's answer moves the books, in a short transaction of its own."""
    if refund_id is not None:
        async with services.books.transaction() as conn:
            await refunds.answered(conn, refund_id, made.id, made.status, made_at=made.created)
    return {"refund_id": made.id, "status": made.status}


async def refund_last_look(services: Services, payload: dict[str, Any], key: str,
                           budget: float) -> dict[str, Any] | None:
    """Before a refund is given up after a day of errors: did the processor make it after
    all (the last try may have made it and lost the answer)? Asked with no transaction
    open, by the idempotency key in the refund's metadata; what it made is booked, and
    None when it made nothing (the books may then fall back to credit)."""
    processor = _processor(services, payload)
    async with asyncio.timeout(budget):
        made = await processor.find_refund(payload["payment_id"],
                                           payload.get("idempotency_key", key))
    if made is None:
        return None
    return await _book_answer(services, payload.get("refund_id"), made)


async def refund_given_up(conn: asyncpg.Connection, payload: dict[str, Any],
                          reason: str) -> None:
    if payload.get("refund_id") is not None:
        await refunds.refused(conn, payload["refund_id"], reason)


async def expire_checkout(services: Services, payload: dict[str, Any], key: str,
                          budget: float, record: Record) -> dict[str, Any]:
    """Expire an open checkout session. One that completed meanwhile is asked about
    and its payment applied at once, as reconcile would."""
    processor = _processor(services, payload)
    session_id = payload["session_id"]
    async with asyncio.timeout(budget):
        status = await processor.expire_checkout(session_id, key)
        if status != "expired":
            await check_session(services.books, processor, session_id,
                                services.settings.overpayment_policy)
    if status == "expired":
        async with services.pool.acquire() as conn:
            await session_finished(conn, session_id, status, settled=True)
    return {"session_id": session_id, "status": status}


async def send_email(services: Services, payload: dict[str, Any], key: str, budget: float,
                     record: Record) -> dict[str, Any]:
    settings = services.settings
    message = render.render(payload, key, settings,
                            attachment=await _attachment(services, payload))
    recipients = list(dict.fromkeys(payload["to"] + payload["cc"] + payload["bcc"]))
    result = {"message_id": message["Message-ID"]}

    async def accepted(response: str) -> None:
        await record({**result, "response": response})

    try:
        response = await services.mailer.send(message, recipients, accepted, budget=budget,
                                              wait=turn_wait(settings))
    except mail.Busy:
        raise
    except PermanentError:
        await metrics.record_email(services.queue, settings.queue_name, payload["kind"], "failed")
        raise
    except Exception:
        await metrics.record_email(services.queue, settings.queue_name, payload["kind"],
                                   "deferred")
        raise
    await metrics.record_email(services.queue, settings.queue_name, payload["kind"], "sent")
    return {**result, "response": response}


async def _attachment(services: Services, payload: dict[str, Any]) -> render.Attachment | None:
    """`invoice_sent` carries the invoice's PDF, made now from the invoice as it is (its
    page's own builder and store: a state already made is not made again)."""
    if payload["kind"] != "invoice_sent":
        return None
    page = await pages.invoice_page(services.books, payload["context"]["invoice_token"], None)
    return await render.invoice_pdf(page, services.settings)


async def send_webhook(services: Services, payload: dict[str, Any], key: str, budget: float,
                       record: Record) -> dict[str, Any]:
    """POST one message to its endpoint, signed; a 2xx is delivered, a 410 disables the
    endpoint, a refused address fails it at once, anything else is tried again after the
    delays of WEBHOOK_RETRY_SCHEDULE (`Settings.webhook_retry_schedule`)."""
    pool, settings = services.pool, services.settings
    endpoint_id = payload["endpoint_id"]
    # The place first: a busy endpoint's message bounces before any query of its own.
    with webhook.slot(endpoint_id):
        target = await endpoints.target(pool, endpoint_id)
        if target is None:
            raise PermanentError("the endpoint was deleted")
        if target.disabled:
            raise PermanentError("the endpoint is disabled")
        data = outbound.resolve_links(payload["data"], settings.public_url,
                                      services.books.can_pay)
        body = json.dumps({"type": payload["type"], "timestamp": payload["timestamp"],
                           "data": data}, separators=(",", ":"))
        sent = webhook.headers(target.secrets, payload["message_id"], webhook.now(), body)
        try:
            answer = await webhook.post(target.url, body, sent,
                                        allow_private=settings.outbound_allow_private,
                                        budget=budget)
        except webhook.Refused as refused:
            # The address will not become allowed by waiting: failed at once. Which address
            # is for the operator's log only; the message log (its API) names none.
            await endpoints.note_status(pool, key, None)
            log.warning("webhook address refused", extra={"endpoint_id": endpoint_id,
                                                          "reason": str(refused)})
            raise PermanentError("address not allowed") from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            await endpoints.note_status(pool, key, None)
            raise Undelivered(describe(exc)) from None
    await endpoints.note_status(pool, key, answer.status)
    if 200 <= answer.status < 300:
        return {"status": answer.status, "message_id": payload["message_id"]}
    if answer.status == 410:
        await endpoints.disable(pool, endpoint_id, "410 Gone")
        raise PermanentError("the endpoint answered 410 Gone: it is disabled")
    raise Undelivered(f"HTTP {answer.status}")


PERFORMERS: dict[str, Performer] = {
    "webhook": send_webhook,
    "refund": refund_through_processor,
    "expire_checkout": expire_checkout,
    "email": send_email,
}
# What the books do when an effect is given up for good (in the same transaction).
GIVEN_UP: dict[str, Callable[[asyncpg.Connection, dict[str, Any], str], Awaitable[None]]] = {
    "refund": refund_given_up,
}
# Asked before an effect is given up after GIVE_UP_AFTER of errors, with no transaction
# open: whether it happened after all (its result, then recorded done), or not (None).
# A look that fails leaves the effect failed for an operator, without the GIVEN_UP
# fallback: a refund that may have happened is never also credited.
LAST_LOOK: dict[str, Callable[[Services, dict[str, Any], str, float],
                              Awaitable[dict[str, Any] | None]]] = {
    "refund": refund_last_look,
}


# arq cancels a job JOB_TIMEOUT_SECONDS after it starts; everything here ends this much
# (at most a tenth of the job) before that.
MARGIN = 0.5


def job_time(settings: Settings) -> float:
    """How long a job may take, all in: the attempt, and the record of its outcome."""
    return settings.job_timeout_seconds - min(MARGIN, settings.job_timeout_seconds / 10)


def network_budget(settings: Settings, kind: str) -> float:
    """An attempt's network time: half the job. The rest is for a mail to wait its turn
    (`turn_wait`) and for recording what happened, which must not be cut short. An
    outbound webhook waits for no turn, and CONTRACT §9 gives its endpoint 15 s: it gets
    all but a quarter of the job (so 15 s of the default 20)."""
    if kind == "webhook":
        return max(1.0, settings.job_timeout_seconds * 3 / 4)
    return max(1.0, settings.job_timeout_seconds / 2)


def turn_wait(settings: Settings) -> float:
    """How long a mail waits for the one message in the acceptance window (then Busy)."""
    return settings.job_timeout_seconds / 4


def lease_lost(facts: dict[str, Any]) -> str:
    """This attempt outlived its lease and another worker holds the row now: its outcome
    is that worker's to record."""
    log.warning("side effect outcome not recorded: the lease had passed to another worker",
                extra=facts)
    return "lease lost"


async def deliver_outbox(ctx: WorkerContext, outbox_id: int) -> str:
    services = ctx["services"]
    pool, settings = services.pool, services.settings
    ends = asyncio.get_running_loop().time() + job_time(settings)
    # The lease outlives the job, so no other worker takes the row while this one may
    # still be on it.
    row = await outbox.claim(pool, outbox_id, lease=settings.job_timeout_seconds + 10.0)
    if row is None:
        return "not pending"
    facts = {"outbox_id": outbox_id, "kind": row["kind"], "attempt": row["attempts"]}
    budget = network_budget(settings, row["kind"])
    token = row["lease_token"]
    recorded = False

    async def record(result: dict[str, Any]) -> None:
        # Once the effect happened (a mail accepted), recording it is worth waiting for
        # through a slow or briefly absent database, until the job's end: unrecorded,
        # the effect would be done again.
        nonlocal recorded
        async with asyncio.timeout_at(ends):
            for attempt in itertools.count(1):
                try:
                    recorded = await outbox.record_done(pool, outbox_id, result) or recorded
                    return
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                pause = backoff(attempt, base=settings.retry_base_seconds)
                await asyncio.sleep(min(pause, 2.0) / 2)

    started = time.monotonic()
    try:
        perform = PERFORMERS.get(row["kind"])
        if perform is None:
            raise PermanentError(f"no performer for {row['kind']}")
        payload = {**row["payload"], "attempt": row["attempts"],
                   "age": datetime.now(UTC) - row["created_at"]}
        result = await perform(services, payload, row["key"], budget, record)
    except (webhook.Busy, mail.Busy):
        # Not an attempt, and not one of arq's tries either: a Retry would spend one per
        # bounce, and after max_tries the row would wait for the sweeper. The row is due
        # again after `delay` and a job of its own comes for it then.
        delay = random.uniform(*BUSY_DELAY)
        if not await outbox.record_busy(pool, outbox_id, token, delay):
            return lease_lost(facts)
        await enqueue_again(services.queue, "outbox", outbox_id, defer=delay)
        return "busy"
    except Exception as exc:
        if recorded:  # it happened; what failed after (a QUIT, say) changes nothing
            log.info("side effect done", extra=facts)
            return "done"
        reason = describe(exc)
        # An operator's retry (ledger.backlog.retry_outbox) starts the clock again.
        too_old = datetime.now(UTC) - (row["retried_at"] or row["created_at"]) > GIVE_UP_AFTER
        # Outbound webhooks (CONTRACT §9): the settings' delays after each failed attempt,
        # then failed.
        schedule = settings.webhook_retry_schedule
        if row["kind"] == "webhook":
            too_old = row["attempts"] > len(schedule)
        if isinstance(exc, PermanentError) or too_old:
            fall_back = True
            look = None if isinstance(exc, PermanentError) else LAST_LOOK.get(row["kind"])
            if look is not None:
                left = max(1.0, budget - (time.monotonic() - started))
                try:
                    found = await look(services, row["payload"], row["key"], left)
                except Exception as unknown:
                    fall_back = False
                    reason = (f"{reason}; whether it happened is unknown "
                              f"({describe(unknown)}): retry it to ask again")
                else:
                    if found is not None:
                        await record(found)
                        log.info("side effect done", extra=facts)
                        return "done"
            async with services.books.transaction() as conn:
                # The books give up on the effect only with the row, by its holder.
                if not await outbox.record_failed(conn, outbox_id, token, reason):
                    return lease_lost(facts)
                given_up = GIVEN_UP.get(row["kind"])
                if given_up is not None and fall_back:
                    await given_up(conn, row["payload"], reason)
            log.error("side effect failed", extra={**facts, "reason": reason})
            return "failed"
        delay = schedule[row["attempts"] - 1] if row["kind"] == "webhook" \
            else backoff(row["attempts"], base=settings.retry_base_seconds)
        if not await outbox.record_deferred(pool, outbox_id, token, reason, delay):
            return lease_lost(facts)
        log.warning("side effect deferred", extra={**facts, "reason": reason})
        raise Retry(defer=delay) from exc
    await record(result)
    log.info("side effect done", extra=facts)
    return "done"
