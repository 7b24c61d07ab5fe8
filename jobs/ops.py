"""Operator jobs: reconcile one invoice or every open one, resumable in slices.

A reconcile over many invoices may take longer than one job may run, so it
works in slices: after about half the job timeout it saves its progress on
its `ops_jobs` row and asks arq to run it again at once. A worker killed
mid-slice loses only that slice, which is safe to redo.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from arq import Retry

from jobs.events import backoff
from jobs.queueing import enqueue, enqueue_all
from ledger import ops
from ledger.inbox import is_transient
from ledger.reconcile import Report, candidates, reconcile_invoice
from worker.context import WorkerContext
from worker.processor import is_transient_stripe_error, session_retriever

log = logging.getLogger("settle.ops")


async def run_ops_job(ctx: WorkerContext, job_id: str) -> str:
    pool, settings = ctx["pool"], ctx["settings"]
    row = await pool.fetchrow(
        """update ops_jobs set status = 'in_progress', started_at = coalesce(started_at, now())
           where id = $1 and status in ('queued', 'in_progress') returning params, progress""",
        job_id)
    if row is None:
        return "already finished"
    report = Report.from_dict(row["progress"].get("report", {}))
    after: str = row["progress"].get("after", "")
    queue = ctx["redis"]

    async def after_commit(outbox_ids: list[int]) -> None:
        await enqueue_all(queue, outbox_ids)

    retrieve = session_retriever(ctx.get("stripe"))
    deadline = time.monotonic() + settings.job_timeout_seconds / 2
    single = row["params"].get("invoice_id")
    try:
        while True:
            batch = ([single] if not after else []) if single else \
                await candidates(pool, after, 50)
            if not batch:
                break
            for invoice_id in batch:
                await reconcile_invoice(pool, invoice_id, retrieve, settings.overpayment_policy,
                                        after_commit, report)
                after = invoice_id
                if time.monotonic() > deadline:
                    await _save(ctx, job_id, after, report)
                    raise Retry(defer=0)
    except Retry:
        raise
    except Exception as exc:
        if is_transient(exc) or is_transient_stripe_error(exc):
            await _save(ctx, job_id, after, report)
            raise Retry(defer=backoff(ctx["job_try"])) from exc
        log.exception("reconcile failed", extra={"job_id": job_id})
        await pool.execute(
            """update ops_jobs set status = 'failed', reason = $2, result = $3,
                      finished_at = now() where id = $1""",
            job_id, f"{exc.__class__.__name__}: {exc}"[:500], json.dumps(report.as_dict()))
        return "failed"
    await pool.execute(
        """update ops_jobs set status = 'complete', result = $2, finished_at = now()
           where id = $1""",
        job_id, json.dumps(report.as_dict()))
    log.info("reconcile complete", extra={"job_id": job_id, "checked": report.checked,
                                          "repaired": len(report.repaired),
                                          "recovered": len(report.recovered)})
    return "complete"


async def _save(ctx: WorkerContext, job_id: str, after: str, report: Report) -> None:
    await ctx["pool"].execute(
        "update ops_jobs set progress = $2 where id = $1",
        job_id, json.dumps({"after": after, "report": report.as_dict()}))


async def start_reconcile(pool: Any, queue: Any, invoice_id: str | None) -> str:
    params = {"invoice_id": invoice_id} if invoice_id else {}
    job_id = await ops.create_job(pool, "reconcile", params)
    await enqueue(queue, "ops", job_id)
    return job_id


async def scheduled_reconcile(ctx: WorkerContext) -> str:
    """The daily (RECONCILE_INTERVAL_SECONDS) run over every open invoice."""
    return await start_reconcile(ctx["pool"], ctx["redis"], None)
