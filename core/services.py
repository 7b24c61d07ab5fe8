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
    processor: Processor
    mailer: Mailer
    # May one more Checkout Session be made for an invoice (core.limits)?
    checkout_permit: Permit

    async def after_commit(self, outbox_ids: list[int]) -> None:
        """Queue the side effects a committed transaction owed (see core.tx)."""
        await enqueue_many(self.queue, "outbox", outbox_ids)

    @property
    def books(self) -> Books:
        return Books(self.pool, self.after_commit, self.settings.public_url,
                     self.processor.configured)


class WorkerContext(TypedDict, total=False):
    """What arq's `ctx` holds for settle's jobs (arq adds `redis`, `job_id`, `job_try`...)."""

    settings: Settings
    services: Services
    # Event handlers by processor name, then by event type (see ledger.inbox).
    handlers: Mapping[str, Mapping[str, Any]]
    redis: ArqRedis
    job_id: str
    job_try: int
