"""Two deployments on one Redis (CONTRACT §2): different QUEUE_NAMEs, each with its own
database, never take, skip or delay each other's jobs, scheduled ones included."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from core.db import create_pool
from core.settings import Settings
from tests.conftest import ROOT, SETTLE, drop_database, process_env, replace, wait_for, with_path
from tests.service import Service
from worker.app import create_app
from worker.migrate import migrate

# One reminder offset a second for longer than the test runs: each scan of a deployment
# claims exactly one reminder of its request, so its count of reminders counts its scans.
SCHEDULE = ",".join(f"{n}s" for n in range(1, 61))


@pytest.fixture
async def other_database(database_url: str) -> AsyncIterator[str]:
    """The second deployment's own database, migrated, dropped at the end."""
    url = with_path(database_url, f"/settle_test_b_{uuid.uuid4().hex[:10]}")
    await migrate(url)
    try:
        yield url
    finally:
        await drop_database(url)


async def pending_event_only_the_sweeper_can_queue(db: asyncpg.Pool) -> str:
    """An event recorded as the intake records one, but never queued (its hand-over lost)."""
    event_id = f"evt_{uuid.uuid4().hex[:24]}"
    await db.execute(
        """insert into events (processor, event_id, type, payload, received_at)
           values ('stripe', $1, 'customer.created', '{}', now() - interval '1 minute')""",
        event_id)
    return event_id


async def test_two_deployments_on_one_redis_each_run_their_own_crons_every_tick(
        paying: Service, aiohttp_client: Any, other_database: str) -> None:
    svc = paying  # payment requests need a processor (§5)
    a = replace(svc.settings, queue_name=f"settle-a-{uuid.uuid4().hex[:6]}")
    b = replace(svc.settings, queue_name=f"settle-b-{uuid.uuid4().hex[:6]}",
                database_url=other_database)
    b_pool = await create_pool(b.database_url, min_size=1, max_size=2)
    b_svc = Service(await aiohttp_client(create_app(b)), b, b_pool)
    deployments: list[tuple[Settings, Service]] = [(a, svc), (b, b_svc)]
    workers: list[subprocess.Popen[bytes]] = []
    try:
        await b_svc.customer()
        requests, swept = [], []
        for _, service in deployments:
            await service.invoice("inv_1", 10_000)
            requests.append((await service.request("inv_1", 1_000))["id"])
            swept.append(await pending_event_only_the_sweeper_can_queue(service.db))
        workers = [subprocess.Popen(
            [SETTLE, "worker"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env=process_env(settings, REMINDER_SCHEDULE=SCHEDULE, REMINDER_SCAN_SECONDS="1",
                            INBOX_SWEEP_SECONDS="1", INBOX_SWEEP_AFTER_SECONDS="0"))
            for settings, _ in deployments]

        # Each deployment's sweeper finds its own lost event.
        for (_, service), event_id in zip(deployments, swept):
            async def handled(service: Service = service, event_id: str = event_id) -> bool:
                return (await service.event_status(event_id))["status"] == "ignored"

            await wait_for(handled, timeout=30)

        async def reminders() -> list[int]:
            return [await service.db.fetchval(
                "select reminders_sent from payment_requests where id = $1", request_id)
                for (_, service), request_id in zip(deployments, requests)]

        # Each deployment's reminder scan runs every second: over ten seconds each claims
        # about ten reminders. Were the ticks shared, the two would add up to about ten.
        before = await reminders()
        await asyncio.sleep(10)
        after = await reminders()
        claimed = [later - earlier for earlier, later in zip(before, after)]
        assert all(n >= 6 for n in claimed), claimed
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(20)
        await b_pool.close()
