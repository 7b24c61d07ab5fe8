"""/healthz, /readyz and /metrics (CONTRACT §8)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from worker import metrics
from worker.context import POOL, QUEUE, SETTINGS


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(request.app[POOL].fetchval("select 1"), 2)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = exc.__class__.__name__
    try:
        await asyncio.wait_for(request.app[QUEUE].ping(), 2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = exc.__class__.__name__
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics_text(request: web.Request) -> web.Response:
    body = await metrics.render(request.app[QUEUE], request.app[POOL],
                                request.app[SETTINGS].queue_name)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
