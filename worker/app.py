"""The aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import stripe
from aiohttp import web

from handlers import api, health, ops, paylinks, webhooks
from handlers.middleware import api_auth, domain_errors
from jobs.queueing import enqueue_all
from worker.context import AFTER_COMMIT, CREATE_SESSION, INTAKE, POOL, QUEUE, SETTINGS
from worker.db import close_pool, create_pool
from worker.intake import Intake
from worker.processor import session_creator, stripe_client
from worker.queue import queue_client
from worker.settings import Settings


async def _postgres(app: web.Application) -> AsyncIterator[None]:
    # min_size=0: the web process starts (and answers 503) while the database is down.
    app[POOL] = await create_pool(app[SETTINGS].database_url, min_size=0, max_size=10)
    yield
    await close_pool(app[POOL])


async def _redis(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    app[QUEUE] = queue_client(settings.redis_url, settings.queue_name)
    queue = app[QUEUE]

    async def after_commit(outbox_ids: list[int]) -> None:
        await enqueue_all(queue, outbox_ids)

    app[AFTER_COMMIT] = after_commit
    app[INTAKE] = Intake(app[POOL], queue)
    yield
    await app[QUEUE].aclose()


async def _stripe(app: web.Application) -> AsyncIterator[None]:
    http = stripe.AIOHTTPClient(timeout=20)
    app[CREATE_SESSION] = session_creator(stripe_client(app[SETTINGS], http))
    yield
    await http.close_async()  # type: ignore[no-untyped-call]


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[domain_errors, api_auth])
    app[SETTINGS] = settings
    app.cleanup_ctx.extend([_postgres, _redis, _stripe])
    app.router.add_post("/webhooks/stripe", webhooks.receive_stripe)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics_text)
    api.add_routes(app)
    paylinks.add_routes(app)
    ops.add_routes(app)
    return app
