"""Building what the edges are handed: the processor registration and `Services`.

Each processor is an entry in PROCESSORS (its `make` and the handlers of its
events), and every entry is live: its webhook route `/webhooks/<name>` with its
own intake (`worker.app`), its handlers in the event job, and the rows made
through it (payments, sessions, refunds) dispatched back to it. DEFAULT names
the one new checkouts go through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import asyncpg
from arq import ArqRedis

from core.limits import CheckoutLimit
from core.processor import Processor
from core.queue import queue_client
from core.services import Services, network_timeout
from core.settings import Settings
from ledger.inbox import Handlers
from notify.smtp import SmtpMailer
from processors.stripe import client as stripe_client
from processors.stripe import events as stripe_events

# A processor as registered: how to make it from the settings (with its network
# timeout), and the handlers of its notices.
Registration = tuple[Callable[[Settings, float], Processor], Handlers]
Registry = Mapping[str, Registration]

PROCESSORS: dict[str, Registration] = {
    "stripe": (stripe_client.make, stripe_events.HANDLERS),
}
# The processor new checkouts go through (the customer's choice comes with the issue
# "Direct Debit through GoCardless").
DEFAULT = "stripe"

__all__ = ["DEFAULT", "PROCESSORS", "Registration", "Registry", "event_handlers",
           "make_processors", "make_queue", "make_services", "network_timeout"]


def make_processors(settings: Settings, registry: Registry | None = None) -> dict[str, Processor]:
    """Every registered processor, made from the settings."""
    timeout = network_timeout(settings)
    return {name: make(settings, timeout)
            for name, (make, _) in (registry or PROCESSORS).items()}


def event_handlers(registry: Registry | None = None) -> Mapping[str, Handlers]:
    return {name: handlers for name, (_, handlers) in (registry or PROCESSORS).items()}


def make_queue(settings: Settings) -> ArqRedis:
    """The queue client of `web` and the commands (the worker has arq's own)."""
    return queue_client(settings.redis_url, settings.queue_name,
                        sentinels=settings.redis_sentinels,
                        sentinel_master=settings.redis_sentinel_master)


def make_services(settings: Settings, pool: asyncpg.Pool, queue: ArqRedis,
                  processors: Mapping[str, Processor], default: str = DEFAULT) -> Services:
    return Services(settings=settings, pool=pool, queue=queue,
                    processor=processors[default], processors=processors,
                    mailer=SmtpMailer(settings, timeout=network_timeout(settings)),
                    checkout_permit=CheckoutLimit(queue, settings.queue_name))


async def close_processors(processors: Mapping[str, Processor]) -> None:
    for processor in processors.values():
        await processor.close()
