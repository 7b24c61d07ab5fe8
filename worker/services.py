"""Building what the edges are handed: the processor registration and `Services`.

Each processor is an entry in PROCESSORS (how it reads its own settings from the
environment, its `make` and the handlers of its events), and every entry is live:
its webhook route `/webhooks/<name>` with its own intake (`worker.app`), its
handlers in the event job, and the rows made through it (payments, sessions,
refunds) dispatched back to it. DEFAULT names
the one offered first when the customer chooses how to pay (`Services.ways`), and the
one a form that names no way pays through.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import NamedTuple

import asyncpg
from arq import ArqRedis

from core.limits import CheckoutLimit
from core.processor import Processor
from core.queue import queue_client
from core.services import Services, network_timeout
from core.settings import ProcessorSettings, Settings
from ledger.inbox import Handlers
from notify.smtp import SmtpMailer
from processors.gocardless import client as gocardless_client
from processors.gocardless import events as gocardless_events
from processors.gocardless.settings import GoCardlessSettings
from processors.stripe import client as stripe_client
from processors.stripe import events as stripe_events
from processors.stripe.settings import StripeSettings


class Registration(NamedTuple):
    """A processor as registered."""

    # Its own settings from the environment (raises SettingsError naming the variable).
    from_env: Callable[[Mapping[str, str]], ProcessorSettings]
    # The processor, from the settings (its own among `settings.processors`) and its
    # network timeout.
    make: Callable[[Settings, float], Processor]
    # The handlers of its notices.
    handlers: Handlers


Registry = Mapping[str, Registration]

PROCESSORS: dict[str, Registration] = {
    "stripe": Registration(StripeSettings.from_env, stripe_client.make, stripe_events.HANDLERS),
    "gocardless": Registration(GoCardlessSettings.from_env, gocardless_client.make,
                               gocardless_events.HANDLERS),
}
# The processor offered first of the ways to pay (the customer chooses per payment, among
# the configured processors that take the invoice's currency).
DEFAULT = "stripe"

__all__ = ["DEFAULT", "PROCESSORS", "Registration", "Registry", "event_handlers",
           "make_processors", "make_queue", "make_services", "network_timeout",
           "with_processors"]


def with_processors(settings: Settings, env: Mapping[str, str],
                    registry: Registry | None = None) -> Settings:
    """`settings` with each registered processor's own settings read from `env`: what
    turns `Settings.from_env` into a process's settings (raises SettingsError)."""
    return replace(settings, processors={
        name: registration.from_env(env)
        for name, registration in (registry or PROCESSORS).items()})


def make_processors(settings: Settings, registry: Registry | None = None) -> dict[str, Processor]:
    """Every registered processor, made from the settings."""
    timeout = network_timeout(settings)
    return {name: registration.make(settings, timeout)
            for name, registration in (registry or PROCESSORS).items()}


def event_handlers(registry: Registry | None = None) -> Mapping[str, Handlers]:
    return {name: registration.handlers for name, registration in (registry or PROCESSORS).items()}


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
