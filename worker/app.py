"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from handlers import api, health, webhooks
from handlers.middleware import api_auth, domain_errors
from worker.context import POOL, QUEUE, SETTINGS
from worker.db import create_pool
from worker.queue import queue_client
from worker.settings import Settings


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    # min_size=0: the web process starts (and answers 503) while the database is down.
    app[POOL] = await create_pool(app[SETTINGS].database_url, min_size=0, max_size=10)
    yield
    await app[POOL].close()


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[QUEUE] = queue_client(settings.redis_url, settings.queue_name)
    yield
    await app[QUEUE].aclose()


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[domain_errors, api_auth])
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_postgres, _redis])
    app.router.add_post("/webhooks/stripe", webhooks.receive_stripe)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics_text)
    api.add_routes(app)
    return app
