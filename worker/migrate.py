"""Apply `migrations/NNNN_name.sql` in order, each once, under an advisory lock.

Safe to run twice or from several machines at once: the lock serialises
runners, and `schema_migrations` records what is applied, in the same
transaction as the migration itself.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg

from core.db import STATEMENT_CACHE_SIZE, connect

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works; it only has to be the same for every runner.
LOCK_KEY = 7_315_001

log = logging.getLogger("settle.migrate")


def migration_files(folder: Path = MIGRATIONS) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(folder.glob("*.sql")):
        number, _, _ = path.name.partition("_")
        if not number.isdigit():
            raise ValueError(f"migration {path.name} does not start with a number")
        files.append((int(number), path))
    numbers = [n for n, _ in files]
    if len(numbers) != len(set(numbers)):
        raise ValueError("two migrations share a number")
    return files


async def migrate(dsn: str, *, statement_cache_size: int = STATEMENT_CACHE_SIZE) -> list[str]:
    """Apply what is missing; return the names applied by this call."""
    conn = await connect(dsn, create=True, statement_cache_size=statement_cache_size)
    applied_now: list[str] = []
    try:
        await conn.execute("select pg_advisory_lock($1)", LOCK_KEY)
        await conn.execute(
            """create table if not exists schema_migrations (
                   version    integer primary key,
                   name       text not null,
                   applied_at timestamptz not null default now())"""
        )
        done = {r["version"] for r in await conn.fetch("select version from schema_migrations")}
        for number, path in migration_files():
            if number in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "insert into schema_migrations (version, name) values ($1, $2)",
                    number, path.name,
                )
            log.info("migration applied", extra={"migration": path.name})
            applied_now.append(path.name)
    finally:
        try:
            await conn.execute("select pg_advisory_unlock($1)", LOCK_KEY)
        except asyncpg.PostgresError:
            pass  # the session ends below, which releases the lock anyway
        await conn.close()
    return applied_now
