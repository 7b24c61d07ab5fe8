"""The operators' commands of `settle`: reconcile, events, replay, outbox, retry, invoice,
endpoints and messages (outbound webhooks).

They work on PostgreSQL directly (and Redis to queue), so they answer on a
bad day even when `web` does not. A reconcile runs in this process through
the same job code the worker runs, and is recorded as an ops job all the same.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from arq import Retry

from core.db import create_pool
from core.errors import DomainError
from core.queue import enqueue
from core.services import WorkerContext
from core.settings import Settings
from core.tx import Books, nothing
from delivery import backlog, endpoints as webhook_endpoints
from delivery.outbound import EVENT_TYPES
from jobs.reconcile import run_ops_job
from ledger import reconcile as reconciling
from ledger.invoices import get_invoice
from reads import timeline as timelines
from worker.services import close_processors, make_processors, make_queue, make_services

OK, FAILED, NOT_FOUND = 0, 1, 4


async def open_pool(settings: Settings) -> asyncpg.Pool:
    return await create_pool(settings.database_url,
                             statement_cache_size=settings.database_statement_cache_size)


@asynccontextmanager
async def pooled(settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool for one command, closed when it is done."""
    pool = await open_pool(settings)
    try:
        yield pool
    finally:
        await pool.close()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Rows as aligned columns, for people."""
    cells = [[str(c) for c in columns]] + [
        ["" if row.get(c) is None else str(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip()
                     for line in cells)


def emit(data: Any, as_json: bool, human: str) -> None:
    print(json.dumps(data, indent=2, default=str) if as_json else human)


async def reconcile(settings: Settings, invoice_id: str | None, as_json: bool) -> int:
    pool = await open_pool(settings)
    queue = make_queue(settings)
    processors = make_processors(settings)
    try:
        services = make_services(settings, pool, queue, processors)
        # Run here, not queued: the job's row alone.
        job_id = await reconciling.start_reconcile(services.books, invoice_id)
        ctx: WorkerContext = {"settings": settings, "redis": queue, "job_try": 1,
                              "services": services}
        while True:
            try:
                await run_ops_job(ctx, job_id)
                break
            except Retry as again:
                ctx["job_try"] = ctx.get("job_try", 1) + 1
                await asyncio.sleep(float(again.defer_score or 0) / 1000)
        job = await reconciling.job_view(pool, job_id)
    finally:
        await close_processors(processors)
        await queue.aclose()
        await pool.close()
    result = job["result"] or {}
    human = "\n".join([
        f"job {job_id}: {job['status']}" + (f" ({job['reason']})" if job["reason"] else ""),
        f"checked {result.get('checked', 0)} invoice(s), "
        f"{result.get('sessions_checked', 0)} session(s)",
        *(f"repaired {r.get('invoice_id') or r.get('customer_id')} {r['field']}: "
          f"{r['was']} -> {r['now']}" for r in result.get("repaired", [])),
        *(f"recovered {r['payment_id']} on {r['invoice_id']}: {r['note']}"
          for r in result.get("recovered", [])),
        *(f"error {e}" for e in result.get("errors", [])),
    ])
    emit(job, as_json, human)
    return OK if job["status"] == "complete" else FAILED


async def events(settings: Settings, status: str | None, cursor: str | None, limit: int,
                 as_json: bool) -> int:
    async with pooled(settings) as pool:
        page = await backlog.list_events(pool, status, cursor, limit)
    human = table(page["events"], ["id", "type", "status", "attempts", "received_at", "reason"])
    if page["next"]:
        human += f"\nmore: settle events --next {page['next']}"
    emit(page, as_json, human)
    return OK


async def replay(settings: Settings, event_id: str, as_json: bool) -> int:
    pool = await open_pool(settings)
    queue = make_queue(settings)
    try:
        pk, status = await backlog.replay_event(Books(pool, nothing, settings.public_url),
                                                event_id)
        queued = status == "pending" and await enqueue(queue, "event", pk)
    finally:
        await queue.aclose()
        await pool.close()
    human = (f"event {event_id}: queued again" if status == "pending"
             else f"event {event_id} is {status}: nothing to replay")
    emit({"id": event_id, "status": status, "queued": queued}, as_json, human)
    return OK


async def outbox(settings: Settings, status: str | None, kind: str | None, cursor: str | None,
                 limit: int, as_json: bool) -> int:
    async with pooled(settings) as pool:
        page = await backlog.list_outbox(pool, status, kind, cursor, limit)
    human = table(page["items"], ["id", "kind", "status", "attempts", "invoice_id",
                                  "created_at", "reason"])
    if page["next"]:
        human += f"\nmore: settle outbox --next {page['next']}"
    emit(page, as_json, human)
    return OK


async def retry(settings: Settings, outbox_id: str, as_json: bool) -> int:
    pool = await open_pool(settings)
    queue = make_queue(settings)
    try:
        pk, status = await backlog.retry_outbox(Books(pool, nothing, settings.public_url),
                                                outbox_id)
        queued = status == "pending" and await enqueue(queue, "outbox", pk)
    finally:
        await queue.aclose()
        await pool.close()
    human = (f"outbox {pk}: queued again" if status == "pending"
             else f"outbox {pk} is {status}: nothing to retry")
    emit({"id": pk, "status": status, "queued": queued}, as_json, human)
    return OK


async def invoice(settings: Settings, invoice_id: str, as_json: bool) -> int:
    processors = make_processors(settings)
    try:
        can_pay = any(processor.configured for processor in processors.values())
    finally:
        await close_processors(processors)
    async with pooled(settings) as pool:
        view = await get_invoice(pool, invoice_id, urls=Books(
            pool, nothing, settings.public_url, can_pay=can_pay))
        timeline = await timelines.invoice_timeline(pool, invoice_id)
    head = (f"invoice {view['id']} ({view['number']}): {view['status']}, total {view['total']}, "
            f"paid {view['amount_paid']}, credited {view['amount_credited']}, "
            f"credit-noted {view['amount_credit_noted']}, "
            f"remaining {view['amount_remaining']} {view['currency']}")
    emit({"invoice": view, "timeline": timeline}, as_json,
         head + "\n\n" + table(timeline, ["at", "what", "detail"]))
    return OK


async def endpoints(settings: Settings, cursor: str | None, limit: int, as_json: bool) -> int:
    """The webhook endpoints, newest first; their secrets are never printed."""
    async with pooled(settings) as pool:
        page = await webhook_endpoints.list_endpoints(pool, cursor, limit)
    rows = [{k: v for k, v in e.items() if k != "secret"} for e in page["endpoints"]]
    for row in rows:
        row["events"] = "all" if len(row["events"]) == len(EVENT_TYPES) \
            else ",".join(row["events"])
    human = table(rows, ["id", "url", "disabled", "events", "created_at"])
    if page["next"]:
        human += f"\nmore: settle endpoints --next {page['next']}"
    emit({"endpoints": rows, "next": page["next"]}, as_json, human)
    return OK


async def messages(settings: Settings, endpoint_id: str, status: str | None,
                   cursor: str | None, limit: int, as_json: bool) -> int:
    """An endpoint's messages, newest first (retry a failed one with `settle retry`)."""
    async with pooled(settings) as pool:
        page = await webhook_endpoints.messages(pool, endpoint_id, status, cursor, limit)
    human = table(page["messages"], ["id", "outbox_id", "type", "status", "attempts",
                                     "last_status_code", "next_attempt_at", "last_error"])
    if page["next"]:
        human += f"\nmore: settle messages {endpoint_id} --next {page['next']}"
    emit(page, as_json, human)
    return OK


def run(command: str, settings: Settings, args: Any) -> int:
    try:
        if command == "reconcile":
            return asyncio.run(reconcile(settings, args.invoice, args.json))
        if command == "events":
            return asyncio.run(events(settings, args.status, args.next, args.limit, args.json))
        if command == "replay":
            return asyncio.run(replay(settings, args.event_id, args.json))
        if command == "outbox":
            return asyncio.run(outbox(settings, args.status, args.kind, args.next, args.limit,
                                      args.json))
        if command == "retry":
            return asyncio.run(retry(settings, str(args.outbox_id), args.json))
        if command == "endpoints":
            return asyncio.run(endpoints(settings, args.next, args.limit, args.json))
        if command == "messages":
            return asyncio.run(messages(settings, args.endpoint_id, args.status, args.next,
                                        args.limit, args.json))
        return asyncio.run(invoice(settings, args.invoice_id, args.json))
    except DomainError as error:
        print(f"settle: {error.message}", file=sys.stderr)
        return NOT_FOUND if error.status == 404 else FAILED
