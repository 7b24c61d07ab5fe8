"""Recording webhook events in batches, as they arrive concurrently (group commit).

Each delivery waits for all its own notices (one event from Stripe, up to 250
from GoCardless) to be committed (and queued) before it is answered, exactly as
if it were recorded alone; a delivery's notices are written in one statement,
so either all of them are recorded or none is; concurrent deliveries that
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
from core.tx import Books
from ledger.inbox import record_events

log = logging.getLogger("settle.intake")

MAX_BATCH = 500

# A delivery's notices, and what its sender waits on: their row ids (None for a duplicate).
Pending = tuple[list[InboundEvent], "asyncio.Future[list[int | None]]"]


class Intake:
    """The batch writer of one processor's events."""

    def __init__(self, books: Books, queue: ArqRedis, processor: str, *,
                 max_batch: int = MAX_BATCH) -> None:
        self.max_batch = max_batch
        self.books = books
        self.queue = queue
        self.processor = processor
        self.pending: list[Pending] = []
        self.flushing: asyncio.Task[None] | None = None

    async def record(self, events: list[InboundEvent]) -> list[int | None]:
        """The row id of each notice of one delivery once all are committed and queued
        (None for a duplicate)."""
        future: asyncio.Future[list[int | None]] = asyncio.get_running_loop().create_future()
        self.pending.append((events, future))
        if self.flushing is None:
            # Held here until it ends: the writer of every batch that forms meanwhile.
            self.flushing = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self.pending:
                # Whole deliveries, up to max_batch notices (one delivery at least).
                taken, notices = 0, 0
                while taken < len(self.pending) and (
                        not taken or notices + len(self.pending[taken][0]) <= self.max_batch):
                    notices += len(self.pending[taken][0])
                    taken += 1
                batch, self.pending = self.pending[:taken], self.pending[taken:]
                await self._write(batch)
        finally:
            self.flushing = None

    async def _write(self, batch: list[Pending]) -> None:
        try:
            pks = await record_events(self.books, self.processor,
                                      [event for events, _ in batch for event in events])
        except Exception as exc:
            if isinstance(exc, asyncpg.DataError) and len(batch) > 1:
                # One event PostgreSQL will not store (\u0000, NaN...) must not sink the
                # other deliveries: write them one by one, and let its own fail alone.
                for entry in batch:
                    await self._write([entry])
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            return
        # After the commit: a failure here loses nothing, the sweeper queues them.
        await enqueue_events(self.queue, [pk for pk in pks if pk is not None])
        start = 0
        for events, future in batch:
            if not future.done():
                future.set_result(pks[start:start + len(events)])
            start += len(events)

