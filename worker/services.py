"""Building what the edges are handed: the processor registration and `Services`.

Each processor is an entry in PROCESSORS (its `make` and the handlers of its
events); payments go through one of them, ACTIVE, at a time, and only its webhook
route is served (`worker.app`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import asyncpg
from arq import ArqRedis

from core.limits import CheckoutLimit
from core.processor import Processor
from core.queue import queue_client
from core.services import Services
from core.settings import Settings
from ledger.inbox import Handlers
from notify.smtp import SmtpMailer
from processors.stripe import client as stripe_client
from processors.stripe import events as stripe_events

PROCESSORS: dict[str, tuple[Callable[[Settings, float], Processor], Handlers]] = {
    "stripe": (stripe_client.make, stripe_events.HANDLERS),
}
# The processor settle takes payments through (one at a time, by configuration).
ACTIVE = "stripe"


def make_processor(settings: Settings) -> Processor:
    make, _ = PROCESSORS[ACTIVE]
    return make(settings, network_timeout(settings))


def event_handlers() -> Mapping[str, Handlers]:
    return {name: handlers for name, (_, handlers) in PROCESSORS.items()}


def make_queue(settings: Settings) -> ArqRedis:
    """The queue client of `web` and the commands (the worker has arq's own)."""
    return queue_client(settings.redis_url, settings.queue_name,
                        sentinels=settings.redis_sentinels,
                        sentinel_master=settings.redis_sentinel_master)


def make_services(settings: Settings, pool: asyncpg.Pool, queue: ArqRedis,
                  processor: Processor) -> Services:
    return Services(settings=settings, pool=pool, queue=queue, processor=processor,
                    mailer=SmtpMailer(settings, timeout=network_timeout(settings)),
                    checkout_permit=CheckoutLimit(queue, settings.queue_name))


def network_timeout(settings: Settings) -> float:
    """One network call's timeout: well inside the job that makes it."""
    return max(1.0, min(20.0, settings.job_timeout_seconds / 2))
