"""What the edges (HTTP handlers and jobs) are handed: one object, built by the wiring."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import asyncpg
from arq import ArqRedis

from core.limits import Permit
from core.mail import Mailer
from core.processor import Processor
from core.queue import enqueue_many
from core.settings import Settings
from core.tx import Books


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    pool: asyncpg.Pool
    queue: ArqRedis
    # The processor new checkouts go through (worker.services.DEFAULT; the customer's choice later).
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
