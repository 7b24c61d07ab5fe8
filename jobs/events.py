"""Jobs that move events from the inbox into the books, and the sweeper."""

from __future__ import annotations

import logging
import time

from arq import Retry

from core import metrics
from core.errors import RetryLater
from core.queue import enqueue_many
from core.retry import backoff
from core.services import WorkerContext
from ledger import inbox
from ledger.sweep import stale

log = logging.getLogger("settle.jobs")


async def process_event(ctx: WorkerContext, pk: int) -> str:
    started = time.perf_counter()
    services = ctx["services"]
    try:
        policy = inbox.Policy(overpayment=services.settings.overpayment_policy)
        outcome = await inbox.apply_event(services.pool, pk, ctx["handlers"],
                                          services.after_commit, policy)
    except RetryLater as later:
        log.info("event deferred", extra={"event_pk": pk, "reason": str(later)})
        raise Retry(defer=later.defer or backoff(ctx["job_try"])) from later
    except Exception as exc:
        # Transient, or unexpected and not yet given up on: arq tries again; if
        # arq's tries run out the event is still pending and the sweeper
        # queues it again, so a long outage delays events and loses none.
        log.warning("event attempt failed", extra={
            "event_pk": pk, "job_try": ctx["job_try"], "error": exc.__class__.__name__})
        raise Retry(defer=backoff(ctx["job_try"])) from exc
    await metrics.record_event_processed(
        services.queue, services.settings.queue_name, outcome.event_type, outcome.status,
        time.perf_counter() - started,
    )
    log.info("event done", extra={"event_pk": pk, "status": outcome.status,
                                  "reason": outcome.reason})
    return outcome.status


async def sweep_inbox(ctx: WorkerContext) -> int:
    """Queue again every event pending for longer than INBOX_SWEEP_AFTER_SECONDS.

    This is what makes an accepted event survive Redis losing its data or an
    enqueue that failed after the commit. Owed side effects (the outbox) and
    unfinished operator jobs are swept the same way.
    """
    services = ctx["services"]
    queued = 0
    for owed in ("event", "outbox", "ops"):
        idents = await stale(services.pool, owed, services.settings.inbox_sweep_after_seconds)
        queued += await enqueue_many(services.queue, owed, idents)
    if queued:
        log.info("sweeper queued work again", extra={"count": queued})
    return queued
