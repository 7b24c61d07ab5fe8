"""Operator jobs: reconcile one invoice or every open one, resumable in slices.

A reconcile over many invoices may take longer than one job may run, so it
works in slices: after about half the job timeout it saves its progress on
its `ops_jobs` row and asks arq to run it again at once. A worker killed
mid-slice loses only that slice, which is safe to redo.
"""

from __future__ import annotations

import logging
import time

from arq import Retry

from core.errors import describe, is_transient
from core.retry import backoff
from core.services import WorkerContext
from ledger.reconcile import (
    candidates,
    claim_job,
    finish_job,
    reconcile_invoice,
    save_progress,
    start_reconcile,
)

log = logging.getLogger("settle.ops")


async def run_ops_job(ctx: WorkerContext, job_id: str) -> str:
    services = ctx["services"]
    pool, settings = services.pool, services.settings
    claimed = await claim_job(pool, job_id)
    if claimed is None:
        return "already finished"
    single, after, report = claimed
    deadline = time.monotonic() + settings.job_timeout_seconds / 2
    try:
        while True:
            batch = ([single] if not after else []) if single else \
                await candidates(pool, after, 50)
            if not batch:
                break
            for invoice_id in batch:
                await reconcile_invoice(services.books, invoice_id, services.processor,
                                        settings.overpayment_policy, report)
                after = invoice_id
                if time.monotonic() > deadline:
                    await save_progress(pool, job_id, after, report)
                    raise Retry(defer=0)
    except Retry:
        raise
    except Exception as exc:
        if is_transient(exc):
            await save_progress(pool, job_id, after, report)
            raise Retry(defer=backoff(ctx["job_try"])) from exc
        log.exception("reconcile failed", extra={"job_id": job_id})
        await finish_job(pool, job_id, report, describe(exc))
        return "failed"
    await finish_job(pool, job_id, report)
    log.info("reconcile complete", extra={"job_id": job_id, "checked": report.checked,
                                          "repaired": len(report.repaired),
                                          "recovered": len(report.recovered)})
    return "complete"


async def scheduled_reconcile(ctx: WorkerContext) -> str:
    """The daily (RECONCILE_INTERVAL_SECONDS) run over every open invoice."""
    return await start_reconcile(ctx["services"], None)
