"""A transaction that hands the work it owed to a callback once it has committed.

This is settle's one way to owe work after a commit, used alike by the
webhook's event job, the API and the crons. Code deep inside a transaction
(an invoice becoming paid, say) writes outbox rows and returns nothing about
them; the rows carry the id of the transaction that wrote them, so the
transaction finds them again at its end and, once committed, passes their ids
on to be queued. If that hand-over is lost, the sweeper finds the rows still
pending: the row is the promise, the queue only a nudge.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncpg

AfterCommit = Callable[[list[int]], Awaitable[None]]


async def nothing(_: list[int]) -> None:
    return None


async def owed_here(conn: asyncpg.Connection) -> list[int]:
    """Outbox rows written by the current transaction."""
    rows = await conn.fetch("select id from outbox where txid = txid_current() order by id")
    return [r["id"] for r in rows]


@contextlib.asynccontextmanager
async def transaction(pool: asyncpg.Pool,
                      after_commit: AfterCommit) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as conn:
        async with conn.transaction():
            yield conn
            owed = await owed_here(conn)
        if owed:
            await after_commit(owed)


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
