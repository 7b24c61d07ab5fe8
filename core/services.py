"""What the edges (HTTP handlers and jobs) are handed: one object, built by the wiring."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import asyncpg
from arq import ArqRedis

from core.limits import Permit
from core.mail import Mailer
from core.processor import Processor, takers
from core.queue import enqueue_many
from core.settings import Settings
from core.tx import Books


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    queue: ArqRedis
    # The default processor (worker.services.DEFAULT): the first offered of the ways a
    # customer may pay, and what a form that names no way pays through.
    processor: Processor
    mailer: Mailer
    # May one more Checkout Session be made for an invoice (core.limits)?
    checkout_permit: Permit
    # Every registered processor by name, `processor` among them: a row (a payment, a
    # session, an outbox refund, an event) is dispatched to its own.
    processors: Mapping[str, Processor]

    def processor_of(self, name: str | None) -> Processor | None:
        """The registered processor of that name (a row's own), or None."""
        return self.processors.get(name) if name is not None else None

    def ways(self, currency: str, amount: int | None = None) -> dict[str, Processor]:
        """The ways a customer may pay in `currency` now (CONTRACT §6 "Choosing how to pay"),
        each with the processor it goes through: every configured processor that takes the
        currency (and, given an `amount`, would charge it), the default first, then in
        their registration order. Two that offer the same way are one choice for the
        customer: the first of them takes it."""
        offered: dict[str, Processor] = {}
        for processor in takers((self.processor, *self.processors.values()), currency):
            if amount is None or processor.amount_refused(amount, currency) is None:
                offered.setdefault(processor.way, processor)
        return offered

    @property
    def checkout_origins(self) -> tuple[str, ...]:
        """Where every configured processor's checkout pages live: a customer page's form may
        lead to any of them (its Content-Security-Policy's `form-action`)."""
        origins = (origin for processor in (self.processor, *self.processors.values())
                   if processor.configured for origin in processor.checkout_origins)
        return tuple(dict.fromkeys(origins))

    async def after_commit(self, outbox_ids: list[int]) -> None:
        """Queue the side effects a committed transaction owed (see core.tx)."""
        await enqueue_many(self.queue, "outbox", outbox_ids)

    @property
    def books(self) -> Books:
        # Pay links exist while any processor can take payments.
        return Books(self.pool, self.after_commit, self.settings.public_url,
                     any(p.configured for p in self.processors.values()))


class WorkerContext(TypedDict, total=False):
    """What arq's `ctx` holds for settle's jobs (arq adds `redis`, `job_id`, `job_try`...)."""

    settings: Settings
    services: Services
    # Event handlers by processor name, then by event type (see ledger.inbox).
    handlers: Mapping[str, Mapping[str, Any]]
    # The processors registered, when not the wiring's own (a test's fake beside Stripe).
    registry: Mapping[str, Any]
    redis: ArqRedis
    job_id: str
    job_try: int


def network_timeout(settings: Settings) -> float:
    """One network call's timeout: well inside the job that makes it."""
    return max(1.0, min(20.0, settings.job_timeout_seconds / 2))
