"""Operations over HTTP (CONTRACT §8): reconcile, jobs, events and replay, the outbox and
retry."""

from __future__ import annotations

from aiohttp import web

from core.queue import enqueue
from handlers.keys import services
from handlers.models import EventsQuery, OutboxQuery, ReconcileIn
from handlers.validation import body, path_id, query
from ledger import backlog, reconcile


async def start_reconcile(request: web.Request) -> web.Response:
    data = await body(request, ReconcileIn, optional=True)
    job_id = await reconcile.start_reconcile(services(request), data.invoice_id)
    return web.json_response({"job_id": job_id}, status=202)


async def job(request: web.Request) -> web.Response:
    return web.json_response(await reconcile.job_view(services(request).pool, path_id(request)))


async def events(request: web.Request) -> web.Response:
    asked = query(request, EventsQuery)
    return web.json_response(await backlog.list_events(
        services(request).pool, asked.status, asked.next, asked.limit))


async def replay(request: web.Request) -> web.Response:
    found = services(request)
    event_id = path_id(request)
    pk, status = await backlog.replay_event(found.pool, event_id)
    if status == "pending":
        await enqueue(found.queue, "event", pk)
    return web.json_response({"id": event_id, "status": status}, status=202)


async def outbox(request: web.Request) -> web.Response:
    asked = query(request, OutboxQuery)
    return web.json_response(await backlog.list_outbox(
        services(request).pool, asked.status, asked.kind, asked.next, asked.limit))


async def retry(request: web.Request) -> web.Response:
    found = services(request)
    pk, status = await backlog.retry_outbox(found.pool, path_id(request))
    if status == "pending":
        await enqueue(found.queue, "outbox", pk)
    return web.json_response({"id": pk, "status": status}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/ops/reconcile", start_reconcile)
    app.router.add_get("/v1/ops/jobs/{id}", job)
    app.router.add_get("/v1/ops/events", events)
    app.router.add_post("/v1/ops/events/{id}/replay", replay)
    app.router.add_get("/v1/ops/outbox", outbox)
    app.router.add_post("/v1/ops/outbox/{id}/retry", retry)
