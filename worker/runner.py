"""The arq worker: functions, crons, the context built at start-up, and a bounded stop.

A worker asked to stop (SIGTERM, at every deploy) is gone within
SHUTDOWN_GRACE_SECONDS + CLOSE_WITHIN whatever it is doing: it takes no new
job, lets running ones finish for the grace, then cancels what is left. A
cancelled job rolls its transaction back, so its row is still pending in
PostgreSQL and arq hands the job back to the queue for another worker (or the
sweeper queues it again): nothing is lost. Closing never waits on a pool or a
client without a bound, even when PostgreSQL or Redis has stopped answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from arq import cron, func
from arq.cron import CronJob
from arq.worker import Worker, create_worker

from core.db import close_pool, create_pool
from core.queue import deserialize, job_id, redis_settings, serialize
from core.services import WorkerContext
from core.settings import Settings, check_worker
from jobs.events import process_event, process_events, sweep_inbox
from jobs.reconcile import run_ops_job, scheduled_reconcile
from jobs.outbox import deliver_outbox
from jobs.reminders import send_reminders
from worker.services import PROCESSORS, Registry, event_handlers, make_processors, make_services

log = logging.getLogger("settle.worker")

# Once the grace is over: the most closing may take (jobs' cancellation, arq's own
# Redis clean-up, then the processor client and the pool, each bounded inside it).
CLOSE_WITHIN = 5.0
PROCESSOR_CLOSE_WITHIN = 1.0
POOL_CLOSE_WITHIN = 2.0


def every(seconds: int) -> dict[str, Any]:
    """arq cron fields for "every N seconds" (approximately, where N does not divide 60)."""
    if seconds < 60:
        return {"second": set(range(0, 60, seconds))}
    minutes = seconds // 60
    if minutes < 60:
        return {"minute": set(range(0, 60, minutes)), "second": 0}
    return {"hour": set(range(0, 24, min(minutes // 60, 24))), "minute": 0, "second": 0}


async def startup(ctx: WorkerContext) -> None:
    settings = ctx["settings"]
    pool = await create_pool(settings.database_url, min_size=1, max_size=10,
                             statement_cache_size=settings.database_statement_cache_size)
    # Every registered processor (`build_worker(registry=...)` in tests adds one).
    registry: Registry = ctx.get("registry", PROCESSORS)
    # arq's own client: it carries this queue's name and settle's job serializer.
    ctx["services"] = make_services(settings, pool, ctx["redis"],
                                    make_processors(settings, registry))
    ctx.setdefault("handlers", event_handlers(registry))


async def shutdown(ctx: WorkerContext) -> None:
    services = ctx.get("services")
    if services is not None:
        # All at once, within one bound however many processors are registered.
        closing = asyncio.gather(*(p.close() for p in services.processors.values()))
        try:
            await asyncio.wait_for(closing, PROCESSOR_CLOSE_WITHIN)
        except Exception as exc:  # stopping anyway: their sockets go with the process
            log.warning("processor client not closed", extra={"error": exc.__class__.__name__})
        await close_pool(services.pool, POOL_CLOSE_WITHIN)


class WorkerSettings:
    """The static part; `worker_options` adds what comes from the environment."""

    # Many tries: past them an event or outbox row is still pending in
    # PostgreSQL and the sweeper queues it again.
    functions = [
        func(process_event, max_tries=20),  # type: ignore[arg-type]
        # A batch never asks to be retried (what it cannot apply goes on alone); a worker
        # that died mid-batch is the only reason it runs again.
        func(process_events, max_tries=20),  # type: ignore[arg-type]
        func(deliver_outbox, max_tries=20),  # type: ignore[arg-type]
        # A reconcile resumes slice by slice, each slice one try.
        func(run_ops_job, max_tries=10_000),  # type: ignore[arg-type]
    ]
    on_startup = startup
    on_shutdown = shutdown
    job_serializer = serialize
    job_deserializer = deserialize
    # No results: a finished job's id must be free at once, so the sweeper or a
    # replay can queue the same event again. Ops jobs keep their results in PostgreSQL
    # (`ops_jobs`), where `GET /v1/ops/jobs/{id}` reads them.
    keep_result = 0
    # Jobs wait on PostgreSQL, not CPU: run several at once.
    max_jobs = 20
    poll_delay = 0.1


def scheduled(function: Callable[[WorkerContext], Awaitable[Any]], settings: Settings,
              **fields: Any) -> CronJob:
    """A cron named for this deployment's queue.

    arq names a cron `cron:<function>` and each tick's job `<name>:<ms>`, and job
    keys are global to a Redis database: without the queue in the name, two
    deployments sharing one Redis would take each other's ticks, and each tick
    would run for only one of them.
    """
    return cron(function,  # type: ignore[arg-type]
                name=job_id(settings.queue_name, "cron", function.__name__),
                timeout=settings.job_timeout_seconds, **fields)


def worker_options(settings: Settings, **overrides: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "redis_settings": redis_settings(settings.redis_url, sentinels=settings.redis_sentinels,
                                         sentinel_master=settings.redis_sentinel_master),
        "queue_name": settings.queue_name,
        "job_timeout": settings.job_timeout_seconds,
        # On SIGTERM, running jobs get this long to finish before they are cancelled.
        "job_completion_wait": settings.shutdown_grace_seconds,
        "ctx": {"settings": settings},
        "cron_jobs": [
            scheduled(sweep_inbox, settings, run_at_startup=True,
                      **every(settings.inbox_sweep_seconds)),
            scheduled(send_reminders, settings, run_at_startup=True,
                      **every(settings.reminder_scan_seconds)),
            scheduled(scheduled_reconcile, settings,
                      **every(settings.reconcile_interval_seconds)),
        ],
    }
    options.update(overrides)
    return options


def build_worker(settings: Settings, *, registry: Registry | None = None,
                 **overrides: Any) -> Worker:
    """The worker; `registry` replaces PROCESSORS (a test registers a fake beside Stripe)."""
    check_worker(settings)
    options = worker_options(settings, **overrides)
    if registry is not None:
        options["ctx"] = {**options["ctx"], "registry": registry}
    return create_worker(WorkerSettings, **options)  # type: ignore[arg-type]


def run_worker(settings: Settings) -> None:
    """`settle worker`: arq's `Worker.run`, with closing bounded by CLOSE_WITHIN."""
    worker = build_worker(settings)
    worker.main_task = worker.loop.create_task(worker.main())
    try:
        worker.loop.run_until_complete(worker.main_task)
    except asyncio.CancelledError:
        pass  # how a signal ends main()
    finally:
        try:
            worker.loop.run_until_complete(asyncio.wait_for(worker.close(), CLOSE_WITHIN))
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            # Redis or PostgreSQL not answering: leave anyway. Whatever was not handed
            # back is still pending in PostgreSQL; arq's lock on it expires.
            log.warning("worker stopped without closing cleanly",
                        extra={"error": exc.__class__.__name__})
