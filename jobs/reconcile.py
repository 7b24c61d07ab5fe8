"""Operator jobs: reconcile one invoice or every open one, resumable in slices.

A reconcile over many invoices may take longer than one job may run, so it
works in slices: after about half the job timeout it saves its progress on
its `ops_jobs` row and asks arq to run it again at once. A worker killed
mid-slice loses only that slice, which is safe to redo.

Within a slice, every question to the processor must be answered while the
job has time left to apply the answer and save its progress: a processor too
slow for that cuts the slice short before arq would cancel the job (which
would count no attempt, and leave the sweeper to queue it again on every
sweep). A slice cut short is an attempt, tried again with backoff from the
invoice it was on.
"""

from __future__ import annotations

import asyncio
import logging

from arq import Retry

from core.errors import describe, is_transient
from core.queue import enqueue
from core.retry import backoff
from core.services import WorkerContext
from core.settings import Settings
from ledger.reconcile import (
    candidates,
    claim_job,
    finish_job,
    reconcile_invoice,
    save_progress,
    start_reconcile,
)

log = logging.getLogger("settle.ops")


def answer_within(settings: Settings) -> float:
    """How long into the job the processor's answers may come: what is left after
    them (a fifth of the job, at least a second) applies the last and saves progress."""
    timeout = settings.job_timeout_seconds
    return max(timeout / 2, timeout - max(1.0, timeout / 5))


async def run_ops_job(ctx: WorkerContext, job_id: str) -> str:
    services = ctx["services"]
    pool, books, settings = services.pool, services.books, services.settings
    started = asyncio.get_running_loop().time()
    claimed = await claim_job(books, job_id)
    if claimed is None:
        return "already finished"
    single, after, report = claimed
    slice_ends = started + settings.job_timeout_seconds / 2
    answer_by = started + answer_within(settings)
    try:
        while True:
            batch = ([single] if not after else []) if single else \
                await candidates(pool, after, 50)
            if not batch:
                break
            for invoice_id in batch:
                await reconcile_invoice(books, invoice_id, services.processors,
                                        settings.overpayment_policy, report,
                                        answer_by=answer_by)
                after = invoice_id
                if asyncio.get_running_loop().time() > slice_ends:
                    await save_progress(books, job_id, after, report)
                    raise Retry(defer=0)
    except Retry:
        raise
    except Exception as exc:
        if is_transient(exc):  # the processor out of time (TimeoutError) included
            await save_progress(books, job_id, after, report)
            log.warning("reconcile slice cut short", extra={"job_id": job_id,
                                                             "reason": describe(exc)})
            raise Retry(defer=backoff(ctx["job_try"], base=settings.retry_base_seconds)) from exc
        log.exception("reconcile failed", extra={"job_id": job_id})
        await finish_job(books, job_id, report, describe(exc))
        return "failed"
    await finish_job(books, job_id, report)
    log.info("reconcile complete", extra={"job_id": job_id, "checked": report.checked,
                                          "repaired": len(report.repaired),
                                          "recovered": len(report.recovered)})
    return "complete"


async def scheduled_reconcile(ctx: WorkerContext) -> str:
    """The daily (RECONCILE_INTERVAL_SECONDS) run over every open invoice."""
    services = ctx["services"]
    job_id = await start_reconcile(services.books, None)
    await enqueue(services.queue, "ops", job_id)
    return job_id
