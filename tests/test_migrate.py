"""Migrations: applied once, in order, by any number of concurrent runners."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg

from tests.conftest import drop_database, with_path
from worker.migrate import migrate, migration_files


async def test_concurrent_runners_apply_each_migration_once(database_url: str) -> None:
    url = with_path(database_url, f"/settle_mig_{uuid.uuid4().hex[:8]}")
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        applied = [name for result in results for name in result]
        assert sorted(applied) == [path.name for _, path in migration_files()]
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        try:
            versions = await conn.fetch("select version from schema_migrations order by version")
            assert [r["version"] for r in versions] == [n for n, _ in migration_files()]
            assert await conn.fetchval("select to_regclass('events') is not null")
        finally:
            await conn.close()
    finally:
        await drop_database(url)


def test_migration_files_are_numbered_and_unique() -> None:
    numbers = [n for n, _ in migration_files()]
    assert numbers == sorted(set(numbers)) and numbers[0] == 1
