"""Operations over HTTP (CONTRACT §8): reconcile, jobs, events and replay."""

from __future__ import annotations

from aiohttp import web

from handlers import parse
from jobs.ops import start_reconcile
from jobs.queueing import enqueue
from ledger import ops
from ledger.errors import Invalid
from worker.context import POOL, QUEUE


async def reconcile(request: web.Request) -> web.Response:
    body = await parse.json_object(request, optional=True)
    invoice_id = parse.optional_string(body, "invoice_id", max_length=255)
    if invoice_id:
        await ops.require_invoice(request.app[POOL], invoice_id)
    job_id = await start_reconcile(request.app[POOL], request.app[QUEUE], invoice_id)
    return web.json_response({"job_id": job_id}, status=202)


async def job(request: web.Request) -> web.Response:
    return web.json_response(await ops.job_view(request.app[POOL], parse.path_id(request)))


async def events(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise Invalid("limit_invalid", "limit must be a whole number") from None
    if not 1 <= limit <= 500:
        raise Invalid("limit_invalid", "limit must be from 1 to 500")
    return web.json_response(await ops.list_events(
        request.app[POOL], request.query.get("status") or None,
        request.query.get("next") or request.query.get("cursor") or None, limit))


async def replay(request: web.Request) -> web.Response:
    pk, status = await ops.replay_event(request.app[POOL], parse.path_id(request))
    if status == "pending":
        await enqueue(request.app[QUEUE], "event", pk)
    return web.json_response({"id": request.match_info["id"], "status": status}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/ops/reconcile", reconcile)
    app.router.add_get("/v1/ops/jobs/{id}", job)
    app.router.add_get("/v1/ops/events", events)
    app.router.add_post("/v1/ops/events/{id}/replay", replay)
