"""Side effects owed after a commit: claim the row, perform the effect, record it.

The claim is a committed lease (`delivery.outbox.claim`), so the effect runs
with no transaction open and no row lock held: a slow mail server or
processor delays only its own row. The outcome is recorded in a new, short
statement. A worker that dies mid-effect leaves the lease to expire, and the
effect is tried again under the same key (the processor's idempotency key,
the mail's Message-ID). Every attempt's network calls run within its kind's
budget (shorter than the job), so a hung server is an attempt that counts, with
backoff; the record of what happened has the rest of the job's time, so a
slow database does not turn an effect that happened into one done again.

What each kind does is its `jobs.effects.Effect`: how it is performed, the delay
before it is tried again, when it is too old to be tried again, what it asks
before it is given up (a refund asks the processor whether it happened after all,
so that a refund made is never also credited) and what the books do then. A
failure that will not pass (`PermanentError`) is recorded at once; anything else
is tried again until the kind says it is too old, then recorded as failed
(listed for operators, retryable).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from datetime import UTC, datetime
from typing import Any

from arq import Retry

from core import mail
from core.errors import PermanentError, describe, is_transient
from core.queue import enqueue_again
from core.retry import backoff
from core.services import WorkerContext
from core.settings import Settings
from delivery import outbox
from jobs.effects import effect_of
from ledger.context import Known
from notify import webhook

log = logging.getLogger("settle.outbox")

# How soon a message for a busy endpoint (no place for it: `notify.webhook.slot`) is looked at
# again.
BUSY_DELAY = (0.5, 2.0)


# arq cancels a job JOB_TIMEOUT_SECONDS after it starts; everything here ends this much
# (at most a tenth of the job) before that.
MARGIN = 0.5


def job_time(settings: Settings) -> float:
    """How long a job may take, all in: the attempt, and the record of its outcome."""
    return settings.job_timeout_seconds - min(MARGIN, settings.job_timeout_seconds / 10)


def lease_lost(facts: dict[str, Any]) -> str:
    """This attempt outlived its lease and another worker holds the row now: its outcome
    is that worker's to record."""
    log.warning("side effect outcome not recorded: the lease had passed to another worker",
                extra=facts)
    return "lease lost"


async def deliver_outbox(ctx: WorkerContext, outbox_id: int) -> str:
    services = ctx["services"]
    books, settings = services.books, services.settings
    ends = asyncio.get_running_loop().time() + job_time(settings)
    # The lease outlives the job, so no other worker takes the row while this one may
    # still be on it.
    row = await outbox.claim(books, outbox_id, lease=settings.job_timeout_seconds + 10.0)
    if row is None:
        return "not pending"
    facts = {"outbox_id": outbox_id, "kind": row["kind"], "attempt": row["attempts"]}
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
                    recorded = await outbox.record_done(books, outbox_id, result) or recorded
                    return
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                pause = backoff(attempt, base=settings.retry_base_seconds)
                await asyncio.sleep(min(pause, 2.0) / 2)

    effect = effect_of(row["kind"])
    budget = effect.budget(settings)
    started = time.monotonic()
    try:
        payload = {**row["payload"], "attempt": row["attempts"],
                   "age": datetime.now(UTC) - row["created_at"]}
        result = await effect.perform(services, payload, row["key"], budget, record)
    except (webhook.Busy, mail.Busy):
        # Not an attempt, and not one of arq's tries either: a Retry would spend one per
        # bounce, and after max_tries the row would wait for the sweeper. The row is due
        # again after `delay` and a job of its own comes for it then.
        delay = random.uniform(*BUSY_DELAY)
        if not await outbox.record_busy(books, outbox_id, token, delay):
            return lease_lost(facts)
        await enqueue_again(services.queue, "outbox", outbox_id, defer=delay)
        return "busy"
    except Exception as exc:
        if recorded:  # it happened; what failed after (a QUIT, say) changes nothing
            log.info("side effect done", extra=facts)
            return "done"
        reason = describe(exc)
        permanent = isinstance(exc, PermanentError)
        if permanent or effect.too_old(settings, row["attempts"],
                                       row["retried_at"] or row["created_at"]):
            fall_back = True
            if not permanent:
                left = max(1.0, budget - (time.monotonic() - started))
                try:
                    found = await effect.last_look(services, row["payload"], row["key"], left)
                except Exception as unknown:
                    fall_back = False
                    reason = (f"{reason}; whether it happened is unknown "
                              f"({describe(unknown)}): retry it to ask again")
                else:
                    if found is not None:
                        await record(found)
                        log.info("side effect done", extra=facts)
                        return "done"
            async with books.transaction() as conn:
                # The books give up on the effect only with the row, by its holder.
                if not await outbox.record_failed(conn, outbox_id, token, reason):
                    return lease_lost(facts)
                if fall_back:
                    await effect.given_up(conn, row["payload"], reason, Known(books))
            log.error("side effect failed", extra={**facts, "reason": reason})
            return "failed"
        delay = effect.next_delay(settings, row["attempts"])
        if not await outbox.record_deferred(books, outbox_id, token, reason, delay):
            return lease_lost(facts)
        log.warning("side effect deferred", extra={**facts, "reason": reason})
        raise Retry(defer=delay) from exc
    await record(result)
    log.info("side effect done", extra=facts)
    return "done"
