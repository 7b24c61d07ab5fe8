"""Operations over HTTP (CONTRACT §8): reconcile, jobs, events and replay, the outbox and
retry."""

from __future__ import annotations

from aiohttp import web

from core.errors import Invalid
from core.queue import enqueue
from handlers import parse
from handlers.keys import services
from handlers.parse import path_id
from ledger import backlog, reconcile


async def start_reconcile(request: web.Request) -> web.Response:
    body = await parse.json_object(request, optional=True)
    invoice_id = parse.optional_string(body, "invoice_id", max_length=255)
    job_id = await reconcile.start_reconcile(services(request), invoice_id)
    return web.json_response({"job_id": job_id}, status=202)


async def job(request: web.Request) -> web.Response:
    return web.json_response(await reconcile.job_view(services(request).pool, path_id(request)))


async def events(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise Invalid("limit_invalid", "limit must be a whole number") from None
    if not 1 <= limit <= 500:
        raise Invalid("limit_invalid", "limit must be from 1 to 500")
    return web.json_response(await backlog.list_events(
        services(request).pool, request.query.get("status") or None,
        request.query.get("next") or request.query.get("cursor") or None, limit))


async def replay(request: web.Request) -> web.Response:
    found = services(request)
    pk, status = await backlog.replay_event(found.pool, path_id(request))
    if status == "pending":
        await enqueue(found.queue, "event", pk)
    return web.json_response({"id": request.match_info["id"], "status": status}, status=202)


async def outbox(request: web.Request) -> web.Response:
    raw = request.query.get("limit", "50")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 4:
        raise Invalid("limit_invalid", "limit must be a whole number")
    return web.json_response(await backlog.list_outbox(
        services(request).pool, request.query.get("status") or None,
        request.query.get("kind") or None, request.query.get("next") or None, int(raw)))


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
