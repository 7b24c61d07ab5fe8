"""Jobs that move events from the inbox into the books, and the sweeper."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

from arq import Retry

from core import metrics
from core.errors import RetryLater
from core.queue import enqueue_events, enqueue_many
from core.retry import backoff
from core.services import WorkerContext, network_timeout
from delivery.sweep import stale
from ledger import inbox

log = logging.getLogger("settle.jobs")


async def process_event(ctx: WorkerContext, pk: int) -> str:
    """One event: the sweeper's, a replay's, or one a batch could not apply yet. arq retries
    it (with backoff) while it is not applied."""
    started = time.perf_counter()
    services = ctx["services"]
    base = services.settings.retry_base_seconds
    try:
        outcome = await inbox.apply_event(services.books, pk, ctx["handlers"], _policy(ctx),
                                          processors=services.processors,
                                          fetch_within=network_timeout(services.settings))
    except RetryLater as later:
        log.info("event deferred", extra={"event_pk": pk, "reason": str(later)})
        raise Retry(defer=later.defer or backoff(ctx["job_try"], base=base)) from later
    except Exception as exc:
        # Transient, or unexpected and not yet given up on: arq tries again; if
        # arq's tries run out the event is still pending and the sweeper
        # queues it again, so a long outage delays events and loses none.
        log.warning("event attempt failed", extra={
            "event_pk": pk, "job_try": ctx["job_try"], "error": exc.__class__.__name__})
        raise Retry(defer=backoff(ctx["job_try"], base=base)) from exc
    seconds = time.perf_counter() - started
    await metrics.record_events_processed(services.queue, services.settings.queue_name,
                                          [(outcome.event_type, outcome.status, seconds)])
    log.info("event done", extra={"event_pk": pk, "status": outcome.status,
                                  "reason": outcome.reason})
    return outcome.status


async def process_events(ctx: WorkerContext, pks: list[int]) -> int:
    """Events the intake recorded together, each applied in its own transaction as
    `process_event` applies one; how many were applied or ended.

    One job for several events saves arq's own round trips per job, nothing else: the
    side effects their commits owed are queued once at the end (the rows are already
    committed, and the sweeper finds them if this worker dies first), an event that
    cannot be applied yet goes on alone as a `process_event` job with its backoff, and
    past half the job's time the rest goes on as another batch (each job applies one at
    least), so the job never runs into its timeout (a thin notice's fetch included: a
    quarter of the job at most). A worker that dies mid-batch loses nothing: the batch runs again and
    the events already applied are no-ops.
    """
    services = ctx["services"]
    budget = services.settings.job_timeout_seconds / 2
    # An event begun just before the budget is spent still fetches and applies well inside
    # the job: its fetch gets a quarter of the job at most.
    fetch_within = min(network_timeout(services.settings),
                       services.settings.job_timeout_seconds / 4)
    base = services.settings.retry_base_seconds
    began = time.perf_counter()
    owed: list[int] = []

    async def collect(outbox_ids: list[int]) -> None:
        owed.extend(outbox_ids)

    books = replace(services.books, after_commit=collect)

    done: list[tuple[str, str, float]] = []
    later: list[tuple[int, float]] = []
    for n, pk in enumerate(pks):
        if n and time.perf_counter() - began > budget:
            await enqueue_events(services.queue, pks[n:])
            break
        started = time.perf_counter()
        try:
            outcome = await inbox.apply_event(books, pk, ctx["handlers"], _policy(ctx),
                                              processors=services.processors,
                                              fetch_within=fetch_within)
        except RetryLater as retry:
            log.info("event deferred", extra={"event_pk": pk, "reason": str(retry)})
            later.append((pk, retry.defer or backoff(1, base=base)))
            continue
        except Exception as exc:
            log.warning("event attempt failed", extra={
                "event_pk": pk, "job_try": 1, "error": exc.__class__.__name__})
            later.append((pk, backoff(1, base=base)))
            continue
        done.append((outcome.event_type, outcome.status, time.perf_counter() - started))
        log.info("event done", extra={"event_pk": pk, "status": outcome.status,
                                      "reason": outcome.reason})
    if owed:
        await services.after_commit(owed)
    for defer in sorted({defer for _, defer in later}):
        await enqueue_many(services.queue, "event", [pk for pk, d in later if d == defer],
                           defer=defer)
    await metrics.record_events_processed(services.queue, services.settings.queue_name, done)
    return len(done)


def _policy(ctx: WorkerContext) -> inbox.Policy:
    return inbox.Policy(overpayment=ctx["services"].settings.overpayment_policy)


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
