"""A transaction that hands the work it owed to a callback once it has committed.

This is settle's one way to owe work after a commit, used alike by the
webhook's event job, the API and the crons. Code deep inside a transaction
(an invoice becoming paid, say) writes outbox rows and notes their ids with
`owed`; once the transaction has committed, `transaction` passes those ids
on to be queued. If that hand-over is lost (the process dies between the
commit and the queue), the sweeper finds the rows still pending: the row is
the promise, the queue only a nudge.

Those ids are all the transaction carries: rows a caller has already read in
it are handed on explicitly, as arguments (`ledger.context.Known`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import asyncpg

AfterCommit = Callable[[list[int]], Awaitable[None]]


async def nothing(_: list[int]) -> None:
    return None


@dataclass(slots=True)
class _Open:
    """What the transaction running in this task has noted so far."""

    outbox_ids: list[int] = field(default_factory=list)


# The transaction open in this task, if any (asyncio gives each task its own context).
_OPEN: ContextVar[_Open | None] = ContextVar("settle_open_transaction", default=None)


def owed(outbox_id: int | None) -> None:
    """Note an outbox row the current transaction wrote: it is queued once the transaction
    commits. Outside `transaction` (or for None: nothing was written) it does nothing, and
    the sweeper queues the row."""
    current = _OPEN.get()
    if current is not None and outbox_id is not None:
        current.outbox_ids.append(outbox_id)


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool,
                      after_commit: AfterCommit) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as conn:
        state = _Open()
        token = _OPEN.set(state)
        try:
            async with conn.transaction():
                yield conn
        finally:
            _OPEN.reset(token)
    if state.outbox_ids:
        await after_commit(sorted(set(state.outbox_ids)))


@dataclass(frozen=True, slots=True)
class Books:
    """What the ledger's operations need from their caller: the pool, where work owed
    by a commit goes, the public base URL that links in its answers start with, and
    whether payments can be taken through a processor."""

    pool: asyncpg.Pool
    after_commit: AfterCommit
    public_url: str
    # Whether a processor takes payments (an API key is configured): pay links exist.
    can_pay: bool = True

    def transaction(self) -> contextlib.AbstractAsyncContextManager[asyncpg.Connection]:
        return transaction(self.pool, self.after_commit)
