"""PostgreSQL connections: one pool per process, JSON codecs set once."""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg


def _encode_json(value: Any) -> str:
    # Raw webhook bodies arrive as text already; don't serialise them twice.
    return value if isinstance(value, str) else json.dumps(value)


async def _init(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_encode_json, decoder=json.loads,
                                  schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """What the pool does to a connection it takes back, besides rolling back a transaction
    left open (asyncpg always does that): nothing. asyncpg's default resets the session
    (advisory locks, LISTEN, settings) in one more round trip per use; settle's pooled
    connections never change their session (the migrator's advisory lock is taken on a
    connection of its own), so that trip buys nothing."""


# asyncpg's own default. 0 turns the cache off: pgbouncer in transaction pooling mode
# (before 1.21's max_prepared_statements) cannot keep a connection's named statements.
STATEMENT_CACHE_SIZE = 100


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10,
                      statement_cache_size: int = STATEMENT_CACHE_SIZE) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init, reset=_keep_session,
        statement_cache_size=statement_cache_size,
        # Times rendered by PostgreSQL itself (in JSON) read as UTC, like asyncpg's.
        server_settings={"timezone": "UTC"},
        # Fail fast when the database is gone: a webhook gets a 503 and a job a retry.
        timeout=5, command_timeout=30,
        # Drop idle connections so a restarted server is found again quickly.
        max_inactive_connection_lifetime=60,
    )
    assert pool is not None
    return pool


async def close_pool(pool: asyncpg.Pool, timeout: float = 5.0) -> None:
    """Close gracefully, but never hang a stopping process on a connection a
    cancelled job never gave back: past `timeout`, terminate."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        pool.terminate()


async def connect(dsn: str, *, create: bool = False,
                  statement_cache_size: int = STATEMENT_CACHE_SIZE) -> asyncpg.Connection:
    """One connection; with `create`, make the database first when it is missing."""
    try:
        conn = await asyncpg.connect(dsn, timeout=10, statement_cache_size=statement_cache_size)
    except asyncpg.InvalidCatalogNameError:
        if not create:
            raise
        await create_database(dsn, statement_cache_size=statement_cache_size)
        conn = await asyncpg.connect(dsn, timeout=10, statement_cache_size=statement_cache_size)
    await _init(conn)
    return conn


async def create_database(dsn: str, *,
                          statement_cache_size: int = STATEMENT_CACHE_SIZE) -> None:
    parts = urlsplit(dsn)
    name = parts.path.lstrip("/")
    admin_dsn = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    admin = await asyncpg.connect(admin_dsn, timeout=10, statement_cache_size=statement_cache_size)
    try:
        await admin.execute('create database "{}"'.format(name.replace('"', '""')))
    except (asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
        # Another runner created it meanwhile (two racing creates can also
        # collide on the catalog's unique index instead).
        pass
    finally:
        await admin.close()
