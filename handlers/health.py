"""/healthz, /readyz and /metrics (CONTRACT §8)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from core import metrics
from handlers.errors import error
from handlers.keys import services
from handlers.middleware import token_accepted

log = logging.getLogger("settle.http")


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _check(name: str, probe: Callable[[], Awaitable[object]]) -> str:
    """"ok" or "down": anyone may ask, so what went wrong goes to the log only."""
    try:
        await asyncio.wait_for(probe(), 2)
        return "ok"
    except Exception as exc:
        log.warning("not ready", extra={"service": name, "error": exc.__class__.__name__})
        return "down"


async def readyz(request: web.Request) -> web.Response:
    found = services(request)
    checks = {"postgres": await _check("postgres", lambda: found.pool.fetchval("select 1")),
              "redis": await _check("redis", found.queue.ping)}
    ready = all(v == "ok" for v in checks.values())
    return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)


async def metrics_text(request: web.Request) -> web.Response:
    found = services(request)
    token = found.settings.metrics_token
    if token is not None and not token_accepted(request.headers.get("Authorization"), (token,)):
        return error(401, "unauthorized", "a valid bearer token is required")
    body = await metrics.render(found.queue, found.pool, found.settings.queue_name)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
