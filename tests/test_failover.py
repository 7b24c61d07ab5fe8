"""Behind pgbouncer and Redis Sentinel: the statement cache off, the master found by sentinels."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import asyncpg
import redis.asyncio as aioredis

from core.settings import Settings
from handlers.keys import SERVICES
from sandbox.events import session_completed
from tests.conftest import (
    ROOT, SETTLE, handlers_with, process_env, replace, wait_for)
from tests.redis_servers import redis_server, sentinel
from tests.service import Service
from worker.app import create_app
from worker.runner import build_worker


async def named_statements(pool: asyncpg.Pool) -> int:
    """Statements a pooled connection keeps prepared in its session: what pgbouncer in
    transaction mode cannot carry from one transaction's server connection to the next."""
    async with pool.acquire() as conn:
        count: int = await conn.fetchval("select count(*) from pg_prepared_statements")
        return count


async def test_web_and_worker_run_with_the_statement_cache_off(
        aiohttp_client: Any, settings: Settings, db: asyncpg.Pool) -> None:
    off = replace(settings, database_statement_cache_size=0)
    app = create_app(off)
    svc = Service(await aiohttp_client(app), off, db)
    await svc.customer()
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)

    ctx: dict[str, Any] = {"settings": off, "handlers": handlers_with()}
    worker = build_worker(off, burst=True, handle_signals=False, ctx=ctx, poll_delay=0.02,
                          cron_jobs=[])
    try:
        await worker.main()
        assert await named_statements(ctx["services"].pool) == 0
    finally:
        await worker.close()
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 4_000
    assert await named_statements(app[SERVICES].pool) == 0
    # The same probe on a pool with asyncpg's default cache sees its statements.
    assert await named_statements(db) > 0


async def test_webhook_is_queued_and_applied_through_the_sentinels_master(
        aiohttp_client: Any, settings: Settings, db: asyncpg.Pool, tmp_path: Path) -> None:
    with redis_server(tmp_path) as (redis_port, _), \
            sentinel(tmp_path, redis_port, "settle-test") as sentinel_port:
        # REDIS_URL names a port where nothing listens: only the sentinel can lead there.
        via = replace(settings, redis_url="redis://127.0.0.1:1/0",
                      redis_sentinels=(("127.0.0.1", sentinel_port),),
                      redis_sentinel_master="settle-test")
        svc = Service(await aiohttp_client(create_app(via)), via, db)
        await svc.customer()
        await svc.invoice("inv_1", 10_000)
        event = session_completed("inv_1", 4_000, "pi_1")
        await svc.deliver(event, settle=False)
        master = aioredis.from_url(f"redis://127.0.0.1:{redis_port}/0")
        try:
            queued = [job.decode() for job in await master.zrange(via.queue_name, 0, -1)]
        finally:
            await master.aclose()
        pk = await db.fetchval("select id from events where event_id = $1", event["id"])
        assert f"{via.queue_name}:event:{pk}" in queued

        worker = subprocess.Popen(
            [SETTLE, "worker"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=process_env(via, REDIS_SENTINELS=f"127.0.0.1:{sentinel_port}",
                            REDIS_SENTINEL_MASTER="settle-test"))
        try:
            async def applied() -> bool:
                return (await svc.get_invoice("inv_1"))["amount_paid"] == 4_000

            await wait_for(applied, timeout=30)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(20)
        assert (await svc.event_status(event["id"]))["status"] == "processed"
