"""Recording webhook events in batches, as they arrive concurrently (group commit).

Each delivery waits for its own event to be committed (and queued) before it
is answered, exactly as if it were recorded alone; concurrent deliveries that
arrive while a batch is being written simply go together in the next one,
one INSERT and one Redis round trip for all of them. An idle intake writes
at once: there is no timer, so a lone event is never delayed.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from arq import ArqRedis

from core.processor import InboundEvent
from core.queue import enqueue_events
from ledger.inbox import record_events

log = logging.getLogger("settle.intake")

MAX_BATCH = 500

Pending = tuple[InboundEvent, "asyncio.Future[int | None]"]


class Intake:
    """The batch writer of one processor's events."""

    def __init__(self, pool: asyncpg.Pool, queue: ArqRedis, processor: str, *,
                 max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self.pool = pool
        self.queue = queue
        self.processor = processor
        self.pending: list[Pending] = []
        self.flushing: asyncio.Task[None] | None = None

    async def record(self, event: InboundEvent) -> int | None:
        """The event's row id once committed and queued; None for a duplicate."""
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self.pending.append((event, future))
        if self.flushing is None:
            # Held here until it ends: the writer of every batch that forms meanwhile.
            self.flushing = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                batch = self.pending[:self.max_batch]
                self.pending = self.pending[self.max_batch:]
                await self._write(batch)
        finally:
            self.flushing = None

    async def _write(self, batch: list[Pending]) -> None:
        try:
            pks = await record_events(self.pool, self.processor, [item for item, _ in batch])
        except Exception as exc:
            if isinstance(exc, asyncpg.DataError) and len(batch) > 1:
                # One event PostgreSQL will not store (\u0000, NaN...) must not sink the
                # others: write them one by one, and let that one fail alone.
                for entry in batch:
                    await self._write([entry])
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            return
        # After the commit: a failure here loses nothing, the sweeper queues them.
        await enqueue_events(self.queue, [pk for pk in pks if pk is not None])
        for (_, future), pk in zip(batch, pks):
            if not future.done():
                future.set_result(pk)

