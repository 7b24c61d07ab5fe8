"""Events recorded together are applied by one job, each in its own transaction, with the
guarantees of one event alone (jobs.events.process_events, core.queue.enqueue_events)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis

from core.processor import InboundEvent
from core.queue import EVENTS_PER_JOB, enqueue_events, job_id, queue_client
from core.settings import Settings
from core.tx import Books, nothing
from jobs.events import process_events
from ledger.inbox import record_events
from processors.stripe.events import invoice_reference
from sandbox.events import payment_intent_succeeded
from tests.conftest import replace, run_burst, worker_ctx
from tests.service import Service


# Events that are retried on purpose are retried soon.
pytestmark = pytest.mark.retry_base_seconds(0.05)


async def record(db: asyncpg.Pool, *events: dict[str, Any]) -> list[int]:
    """Events as the intake records concurrent deliveries: one batch."""
    pks = await record_events(Books(db, nothing, ""), "stripe", [
        InboundEvent(e["id"], e["type"], invoice_reference(e), json.dumps(e)) for e in events])
    assert None not in pks
    return [pk for pk in pks if pk is not None]


async def queued(redis: aioredis.Redis, settings: Settings) -> list[str]:
    return [j.decode() for j in await redis.zrange(settings.queue_name, 0, -1)]


async def test_events_recorded_together_are_applied_by_one_job(
        svc: Service, db: asyncpg.Pool, redis: aioredis.Redis, settings: Settings) -> None:
    for n in range(3):
        await svc.invoice(f"inv_{n}", 10_000)
    await svc.settle()  # the invoices' own mails: the queue then holds only the events
    pks = await record(db, *[payment_intent_succeeded(f"inv_{n % 3}", 1_000, f"pi_{n}")
                             for n in range(EVENTS_PER_JOB + 1)])
    queue = queue_client(settings.redis_url, settings.queue_name)
    try:
        assert await enqueue_events(queue, pks) == 2
    finally:
        await queue.aclose()
    # A full batch, and the one left over queued alone as the sweeper would queue it.
    assert sorted(await queued(redis, settings)) == sorted([
        job_id(settings.queue_name, "events", f"{pks[0]}+{EVENTS_PER_JOB}"),
        job_id(settings.queue_name, "event", pks[-1])])
    await run_burst(settings)
    assert await db.fetchval("select count(*) from events where status = 'processed'") \
        == EVENTS_PER_JOB + 1
    paid = [await svc.get_invoice(f"inv_{n}") for n in range(3)]
    assert [i["amount_paid"] for i in paid] == [7_000, 7_000, 7_000]
    # Each capture owed its receipt, and the batch queued them: all were sent.
    assert await db.fetchval(
        """select count(*) from outbox
           where key like 'mail:payment_received:%' and status = 'done'""") == 21


async def test_an_event_a_batch_cannot_apply_yet_goes_on_alone(
        svc: Service, db: asyncpg.Pool, settings: Settings) -> None:
    await svc.invoice("inv_1", 10_000)
    # inv_later does not exist yet: the application creates it a moment later.
    pks = await record(db, payment_intent_succeeded("inv_1", 1_000, "pi_1"),
                       payment_intent_succeeded("inv_later", 2_000, "pi_2"),
                       payment_intent_succeeded("inv_1", 3_000, "pi_3"))
    queue = queue_client(settings.redis_url, settings.queue_name)
    ctx = worker_ctx(settings, db, queue)
    try:
        assert await process_events(ctx, pks) == 2
    finally:
        await queue.aclose()
    rows = await db.fetch("select id, status, attempts from events order by id")
    assert [(r["status"], r["attempts"]) for r in rows] == [
        ("processed", 1), ("pending", 1), ("processed", 1)]
    # It waits in the queue under its own id, with its backoff; the others are not held.
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 4_000
    await svc.invoice("inv_later", 5_000)
    await run_burst(settings)
    assert (await svc.get_invoice("inv_later"))["amount_paid"] == 2_000
    assert await db.fetchval("select status from events where id = $1", pks[1]) == "processed"


async def test_a_batch_run_again_changes_nothing(
        svc: Service, db: asyncpg.Pool, settings: Settings) -> None:
    """What arq does when the worker running a batch died: the batch runs again."""
    await svc.invoice("inv_1", 10_000)
    pks = await record(db, *[payment_intent_succeeded("inv_1", 1_000, f"pi_{n}")
                             for n in range(5)])
    queue = queue_client(settings.redis_url, settings.queue_name)
    ctx = worker_ctx(settings, db, queue)
    try:
        assert await process_events(ctx, pks[:2]) == 2  # died after two
        assert await process_events(ctx, pks) == 5
    finally:
        await queue.aclose()
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["amount_paid"], len(invoice["payments"])) == (5_000, 5)
    assert await db.fetchval(
        "select count(*) from outbox where key like 'mail:payment_received:%'") == 5
    assert await db.fetchval("select sum(attempts) from events") == 5


async def test_a_batch_out_of_time_hands_on_the_rest(
        svc: Service, db: asyncpg.Pool, settings: Settings) -> None:
    # No time at all: each job applies one event and queues the rest as a new batch.
    hurried = replace(settings, job_timeout_seconds=0)
    await svc.invoice("inv_1", 10_000)
    pks = await record(db, *[payment_intent_succeeded("inv_1", 1_000, f"pi_{n}")
                             for n in range(4)])
    queue = queue_client(settings.redis_url, settings.queue_name)
    try:
        assert await process_events(worker_ctx(hurried, db, queue), pks) == 1
    finally:
        await queue.aclose()
    assert await db.fetchval("select count(*) from events where status = 'pending'") == 3
    await run_burst(settings)
    assert await db.fetchval("select count(*) from events where status = 'pending'") == 0
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 4_000
