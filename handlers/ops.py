"""Operations over HTTP (CONTRACT §8): reconcile, jobs, events and replay, the outbox and
retry."""

from __future__ import annotations

from aiohttp import web

from core.queue import enqueue
from delivery import backlog
from handlers.answers import EventList, Job, JobStarted, OutboxList, Replayed, Retried
from handlers.keys import services
from handlers.models import EventsQuery, OutboxQuery, ReconcileIn
from handlers.routes import Routes
from handlers.validation import body, path_id, query
from ledger import reconcile

ROUTES = Routes("operations")


@ROUTES.post("/v1/ops/reconcile", body=ReconcileIn, body_required=False,
             answers={202: JobStarted}, errors={404: ("not_found",)})
async def start_reconcile(request: web.Request) -> web.Response:
    """Recompute one invoice (or every open one) from its payment records, repair and report
    drift, and recover payments the processor knows of and settle missed."""
    data = await body(request, ReconcileIn, optional=True)
    found = services(request)
    job_id = await reconcile.start_reconcile(found.books, data.invoice_id)
    await enqueue(found.queue, "ops", job_id)
    return web.json_response({"job_id": job_id}, status=202)


@ROUTES.get("/v1/ops/jobs/{id}", answers={200: Job}, on=JobStarted)
async def job(request: web.Request) -> web.Response:
    """An operator job: its status and, once finished, its result."""
    return web.json_response(await reconcile.job_view(services(request).pool, path_id(request)))


@ROUTES.get("/v1/ops/events", query=EventsQuery, answers={200: EventList})
async def events(request: web.Request) -> web.Response:
    """The processor's events, newest first, by status."""
    asked = query(request, EventsQuery)
    return web.json_response(await backlog.list_events(
        services(request).pool, asked.status, asked.next, asked.limit))


@ROUTES.post("/v1/ops/events/{id}/replay", answers={202: Replayed},
             on=(EventList, "events/0/id"))
async def replay(request: web.Request) -> web.Response:
    """Process a failed event again (one in another state is left as it is)."""
    found = services(request)
    event_id = path_id(request)
    pk, status = await backlog.replay_event(found.books, event_id)
    if status == "pending":
        await enqueue(found.queue, "event", pk)
    return web.json_response({"id": event_id, "status": status}, status=202)


@ROUTES.get("/v1/ops/outbox", query=OutboxQuery, answers={200: OutboxList})
async def outbox(request: web.Request) -> web.Response:
    """Every side effect owed (mails, processor refunds and session expiries), newest
    first."""
    asked = query(request, OutboxQuery)
    return web.json_response(await backlog.list_outbox(
        services(request).pool, asked.status, asked.kind, asked.next, asked.limit))


@ROUTES.post("/v1/ops/outbox/{id}/retry", answers={202: Retried},
             on=(OutboxList, "items/0/id"))
async def retry(request: web.Request) -> web.Response:
    """Try a failed side effect again under the same key (so never performed twice)."""
    found = services(request)
    pk, status = await backlog.retry_outbox(found.books, path_id(request))
    if status == "pending":
        await enqueue(found.queue, "outbox", pk)
    return web.json_response({"id": pk, "status": status}, status=202)


def add_routes(app: web.Application) -> None:
    ROUTES.add_to(app)
