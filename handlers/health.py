"""/healthz, /readyz and /metrics (CONTRACT §8)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from core import metrics
from handlers.keys import services


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}
    try:
        await asyncio.wait_for(services(request).pool.fetchval("select 1"), 2)
        checks["postgres"] = "ok"
    except Exception as exc:
        checks["postgres"] = exc.__class__.__name__
    try:
        await asyncio.wait_for(services(request).queue.ping(), 2)
        checks["redis"] = "ok"
    except Exception as exc:
        checks["redis"] = exc.__class__.__name__
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics_text(request: web.Request) -> web.Response:
    found = services(request)
    body = await metrics.render(found.queue, found.pool, found.settings.queue_name)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
