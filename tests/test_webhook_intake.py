"""Bad bodies are 400s; accepted events are recorded once, queued, and never lost."""

from __future__ import annotations

import asyncio
import json
import time

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from core.queue import job_id
from ledger.inbox import Event, Outcome, Policy, Registration
from ledger.inbox import Handlers
from tests.conftest import (
    handlers_with, replace, run_burst, running_worker, wait_for, worker_ctx)
from sandbox.events import event, signed, stripe_object
from worker.app import create_app
from core.settings import Settings


async def deliver(client: TestClient, raw: bytes, **kw: object) -> int:
    raw, headers = signed(raw)
    response = await client.post("/webhooks/stripe", data=raw, headers=headers, **kw)  # type: ignore[arg-type]
    return response.status


async def events(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return await db.fetch("select * from events order by id")


def probe_handlers() -> dict[str, Handlers]:
    """A handler whose every run leaves a row, to count how often an event was applied."""

    async def probe(conn: asyncpg.Connection, ev: Event, policy: Policy) -> Outcome:
        await conn.execute("insert into test_probe_effects (event_id) values ($1)", ev.event_id)
        return Outcome("processed")

    return handlers_with(**{"settle.test_probe": Registration(probe, needs_invoice=False)})


async def effects(db: asyncpg.Pool) -> int:
    return int(await db.fetchval("select count(*) from test_probe_effects"))


# --- bad bodies ---------------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    b"not json",
    b"",
    b"[1, 2, 3]",
    b'"a string"',
    b'{"type": "checkout.session.completed"}',
    b'{"id": "evt_1"}',
    b'{"id": 12, "type": "checkout.session.completed"}',
    b'{"id": "evt_1", "type": ["x"]}',
    b'{"id": "", "type": "x"}',
    json.dumps({"id": "e" * 300, "type": "x"}).encode(),
    b'{"id": "evt_\xff\xfe", "type": "x"}',
    b'{"id": "evt_nul", "type": "x", "data": "\\u0000"}',
    b'{"id": "evt_nan", "type": "x", "amount": NaN}',
], ids=["not-json", "empty", "array", "string", "no-id", "no-type", "id-not-string",
        "type-not-string", "empty-id", "long-id", "invalid-utf8", "nul-char", "nan"])
async def test_bad_body_is_400_and_records_nothing(client: TestClient, db: asyncpg.Pool,
                                                   raw: bytes) -> None:
    assert await deliver(client, raw) == 400
    assert await events(db) == []


async def test_oversize_body_is_413(aiohttp_client: object, settings: Settings,
                                    db: asyncpg.Pool) -> None:
    small = replace(settings, webhook_max_bytes=2048)
    client = await aiohttp_client(create_app(small))  # type: ignore[operator]
    ev = event("payment_intent.succeeded", stripe_object("payment_intent"))
    ev["padding"] = "x" * 4096
    assert await deliver(client, json.dumps(ev).encode()) == 413

    async def chunks():  # no Content-Length: the limit holds while streaming too
        yield b'{"id": "evt_big", "type": "x", "pad": "'
        for _ in range(10):
            yield b"y" * 1024
        yield b'"}'

    raw, headers = signed(b"ignored")
    response = await client.post("/webhooks/stripe", data=chunks(), headers=headers)
    assert response.status == 413
    ev.pop("padding")
    assert await deliver(client, json.dumps(ev).encode()) == 200
    assert len(await events(db)) == 1


# --- recording and applying -------------------------------------------------------

async def test_accepted_event_is_recorded_and_queued(client: TestClient, db: asyncpg.Pool,
                                                     redis: aioredis.Redis,
                                                     settings: Settings) -> None:
    ev = event("customer.created", {"id": "cus_1", "object": "customer", "metadata": {}})
    raw, headers = signed(ev)
    response = await client.post("/webhooks/stripe", data=raw, headers=headers)
    assert response.status == 200
    assert await response.json() == {"received": True, "duplicate": False}
    [row] = await events(db)
    assert (row["event_id"], row["type"], row["status"]) == (ev["id"], "customer.created", "pending")
    assert row["payload"] == ev
    queued = job_id(settings.queue_name, "event", row["id"])
    assert await redis.zrange(settings.queue_name, 0, -1) == [queued.encode()]

    await run_burst(settings)
    [row] = await events(db)
    assert row["status"] == "ignored"
    assert "does not act on customer.created" in row["reason"]
    assert row["attempts"] == 1 and row["processed_at"] is not None


async def test_event_without_invoice_metadata_is_ignored(client: TestClient, db: asyncpg.Pool,
                                                         settings: Settings) -> None:
    async def must_not_run(conn: asyncpg.Connection, ev: Event, policy: Policy) -> Outcome:
        raise AssertionError("handler ran for an event without metadata.invoice_id")

    handlers = handlers_with(**{"payment_intent.succeeded": Registration(must_not_run)})
    pi = stripe_object("payment_intent", metadata={})
    assert await deliver(client, json.dumps(event("payment_intent.succeeded", pi)).encode()) == 200
    await run_burst(settings, handlers)
    [row] = await events(db)
    assert (row["status"], row["reason"]) == ("ignored", "no metadata.invoice_id")


async def test_duplicate_delivery_applies_once(client: TestClient, db: asyncpg.Pool,
                                               settings: Settings) -> None:
    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    for _ in range(3):
        raw_signed, headers = signed(raw)
        response = await client.post("/webhooks/stripe", data=raw_signed, headers=headers)
        assert response.status == 200
    assert [await deliver(client, raw)] == [200]
    await run_burst(settings, probe_handlers())
    assert len(await events(db)) == 1
    assert await effects(db) == 1
    # Delivered again after it was applied: still one row, one effect.
    assert await deliver(client, raw) == 200
    await run_burst(settings, probe_handlers())
    assert await effects(db) == 1


async def test_fifty_concurrent_deliveries_make_one_row_and_one_job(
        client: TestClient, db: asyncpg.Pool, redis: aioredis.Redis, settings: Settings) -> None:
    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    statuses = await asyncio.gather(*(deliver(client, raw) for _ in range(50)))
    assert statuses == [200] * 50
    [row] = await events(db)
    assert await redis.zcard(settings.queue_name) == 1
    await run_burst(settings, probe_handlers())
    assert await effects(db) == 1
    [row] = await events(db)
    assert (row["status"], row["attempts"]) == ("processed", 1)


async def test_job_run_twice_changes_nothing(client: TestClient, db: asyncpg.Pool,
                                             redis: aioredis.Redis, settings: Settings) -> None:
    from arq import ArqRedis

    from core.queue import deserialize, serialize

    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    assert await deliver(client, raw) == 200
    [row] = await events(db)
    await run_burst(settings, probe_handlers())
    queue = ArqRedis(redis.connection_pool, job_serializer=serialize,
                     job_deserializer=deserialize, default_queue_name=settings.queue_name)
    # The id is free again once done, so the same job can be queued and run again.
    assert await queue.enqueue_job("process_event", row["id"],
                                   _job_id=job_id(settings.queue_name, "event", row["id"]))
    await run_burst(settings, probe_handlers())
    assert await effects(db) == 1
    [again] = await events(db)
    assert (again["status"], again["attempts"]) == ("processed", 1)


# --- failure paths ------------------------------------------------------------------

async def refuse_connections(database_url: str, allow: bool) -> None:
    from tests.conftest import with_path

    admin = await asyncpg.connect(with_path(database_url, "/postgres"))
    name = database_url.rsplit("/", 1)[1]
    await admin.execute(f'alter database "{name}" with allow_connections {str(allow).lower()}')
    if not allow:
        await admin.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity where datname = $1", name)
    await admin.close()


async def test_database_down_answers_503_and_writes_nothing(
        client: TestClient, db: asyncpg.Pool, redis: aioredis.Redis, settings: Settings) -> None:
    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    await refuse_connections(settings.database_url, allow=False)
    try:
        raw_signed, headers = signed(raw)
        response = await client.post("/webhooks/stripe", data=raw_signed, headers=headers)
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "unavailable"
        assert (await client.get("/readyz")).status == 503
    finally:
        await refuse_connections(settings.database_url, allow=True)
    assert await redis.zcard(settings.queue_name) == 0
    # The processor retries; now it lands, once.
    assert await wait_for(lambda: deliver(client, raw), timeout=10) == 200
    check = await asyncpg.connect(settings.database_url)
    try:
        assert await check.fetchval("select count(*) from events") == 1
    finally:
        await check.close()


async def test_redis_down_still_records_and_sweeper_catches_up(
        aiohttp_client: object, db: asyncpg.Pool, settings: Settings) -> None:
    dead = replace(settings, redis_url="redis://127.0.0.1:9/0")
    client = await aiohttp_client(create_app(dead))  # type: ignore[operator]
    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    assert await deliver(client, raw) == 200
    assert (await client.get("/readyz")).status == 503
    [row] = await events(db)
    assert row["status"] == "pending"
    async with running_worker(settings, probe_handlers()):
        await wait_for(lambda: effects(db))
    [row] = await events(db)
    assert row["status"] == "processed"


async def test_redis_flushed_after_200_sweeper_still_processes(
        client: TestClient, db: asyncpg.Pool, redis: aioredis.Redis, settings: Settings) -> None:
    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    assert await deliver(client, raw) == 200
    assert await redis.zcard(settings.queue_name) == 1
    await redis.flushdb()
    assert await redis.zcard(settings.queue_name) == 0
    async with running_worker(settings, probe_handlers()):
        await wait_for(lambda: effects(db))

        async def processed() -> bool:
            return await db.fetchval("select status from events") == "processed"

        await wait_for(processed)
    assert await effects(db) == 1


async def test_sweeper_leaves_recent_events_to_their_job(
        client: TestClient, db: asyncpg.Pool, redis: aioredis.Redis, settings: Settings) -> None:
    from jobs.events import sweep_inbox
    from core.db import create_pool
    from core.queue import queue_client

    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    assert await deliver(client, raw) == 200
    await redis.flushdb()
    queue = queue_client(settings.redis_url, settings.queue_name)
    pool = await create_pool(settings.database_url)
    try:
        patient = replace(settings, inbox_sweep_after_seconds=3600)
        assert await sweep_inbox(worker_ctx(patient, pool, queue)) == 0
        assert await sweep_inbox(worker_ctx(settings, pool, queue)) == 1
        # Already queued: sweeping again queues nothing more.
        assert await sweep_inbox(worker_ctx(settings, pool, queue)) == 0
    finally:
        await pool.close()
        await queue.aclose()
    assert await redis.zcard(settings.queue_name) == 1


async def test_ack_does_not_wait_for_processing(client: TestClient, db: asyncpg.Pool) -> None:
    raw = json.dumps(event("settle.test_probe", {"object": "probe"})).encode()
    started = time.monotonic()
    assert await deliver(client, raw) == 200
    assert time.monotonic() - started < 5  # sanity only: no worker is running at all
    assert await effects(db) == 0
