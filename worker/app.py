"""The aiohttp application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from core.db import close_pool, create_pool
from core.settings import Settings
from handlers import api, endpoints, health, merchant, openapi, ops, pages, paylinks, webhooks
from handlers.bodies import bodies
from handlers.intake import Intake
from handlers.keys import BODY_READS, INTAKES, SERVICES
from handlers.middleware import api_auth, domain_errors, unexpected_errors, without_server
from worker.services import (
    PROCESSORS,
    Registry,
    close_processors,
    make_processors,
    make_queue,
    make_services,
)


def _services(settings: Settings,
              registry: Registry) -> Callable[[web.Application], AsyncIterator[None]]:
    async def services(app: web.Application) -> AsyncIterator[None]:
        # min_size=0: the web process starts (and answers 503) while the database is down.
        pool = await create_pool(settings.database_url, min_size=0, max_size=10,
                                 statement_cache_size=settings.database_statement_cache_size)
        queue = make_queue(settings)
        processors = make_processors(settings, registry)
        app[SERVICES] = found = make_services(settings, pool, queue, processors)
        app[INTAKES] = {name: Intake(found.books, queue, name,
                                     max_batch=settings.intake_max_batch)
                        for name in processors}
        yield
        await close_processors(processors)
        await queue.aclose()
        await close_pool(pool)

    return services


def create_app(settings: Settings, registry: Registry | None = None) -> web.Application:
    """The application; `registry` replaces PROCESSORS (a test registers a fake beside
    Stripe). Every registered processor is live: its route, its intake."""
    registry = registry or PROCESSORS
    # Outermost first: unexpected_errors has the last word on anything the others let by;
    # bodies are read after api_auth, so the API's only once its token is accepted.
    app = web.Application(middlewares=[unexpected_errors, domain_errors, api_auth, bodies])
    app[BODY_READS] = asyncio.Semaphore(settings.body_reads_max)
    app.on_response_prepare.append(without_server)
    app.cleanup_ctx.append(_services(settings, registry))
    webhooks.add_routes(app, registry)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics_text)
    api.add_routes(app)
    merchant.add_routes(app)
    paylinks.add_routes(app)
    pages.add_routes(app)
    ops.add_routes(app)
    endpoints.add_routes(app)
    openapi.add_routes(app)
    return app
