"""Settlement: captures applied per second by one and by two `worker` processes, against
arq's own no-op job rate (bench/noop.py, same arq settings) measured in the same run.

Events are recorded first; the clock runs from queueing their jobs to the last one
applied (for the no-op, to the queue being empty).

    python -m bench.settlement [--events 4000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid

import asyncpg
from arq.constants import expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms

from bench.common import (
    capture_event, env, free_port, fresh_database, start, stop, urls, wait_ready)
from core.db import create_pool
from core.processor import InboundEvent
from core.queue import enqueue_events, queue_client, serialize
from core.tx import Books, nothing
from ledger.inbox import record_events
from processors.stripe.events import invoice_reference


async def prepare(database: str) -> None:
    pool = await create_pool(database)
    try:
        await pool.execute("insert into customers (id, email) values ('cus_b', 'b@example.com')")
        await pool.executemany(
            """insert into invoices (id, customer_id, number, currency, total, sent_at, pay_token)
               values ($1, 'cus_b', $1, 'usd', 1000000000, now(), $2)""",
            [(f"inv_{i}", uuid.uuid4().hex) for i in range(200)])
    finally:
        await pool.close()


async def record_captures(database: str, count: int) -> list[int]:
    """`count` new captures, recorded and pending, each its own PaymentIntent: every run
    applies fresh money (a capture applied before would be a cheap no-op)."""
    pool = await create_pool(database)
    try:
        items = []
        for _ in range(count):
            item = capture_event(f"inv_{random.randrange(200)}", random.randrange(100, 5_000))
            items.append(InboundEvent(str(item["id"]), str(item["type"]),
                                      invoice_reference(item),
                                      json.dumps(item)))
        pks: list[int] = []
        for i in range(0, count, 500):
            books = Books(pool, nothing, "")
            pks += [pk for pk in await record_events(books, "stripe", items[i:i + 500]) if pk]
        return pks
    finally:
        await pool.close()


async def settle_rate(database: str, redis: str, count: int, workers: int) -> float:
    queue = f"bench-settle-{uuid.uuid4().hex[:6]}"
    pks = await record_captures(database, count)
    procs = [start(["settle", "worker"], env(database, redis, queue)) for _ in range(workers)]
    try:
        await wait_ready(redis, queue, workers)
        client = queue_client(redis, queue)
        conn = await asyncpg.connect(database)
        started = time.perf_counter()
        # As the intake queues what it records together (core.queue.enqueue_events).
        for i in range(0, len(pks), 500):
            await enqueue_events(client, pks[i:i + 500])
        while await conn.fetchval("select count(*) from events where status = 'pending'"):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        await conn.close()
        await client.aclose()
        return len(pks) / elapsed
    finally:
        stop(*procs)


async def noop_rate(redis: str, count: int, workers: int) -> float:
    queue = f"bench-noop-{uuid.uuid4().hex[:6]}"
    procs = [start([sys.executable, "-m", "bench.noop", redis, queue], env("", redis, queue))
             for _ in range(workers)]
    try:
        await wait_ready(redis, queue, workers)
        client = queue_client(redis, queue)
        started = time.perf_counter()
        now = timestamp_ms()
        for i in range(0, count, 500):
            pipe = client.pipeline(transaction=False)
            for n in range(i, min(i + 500, count)):
                jid = f"{queue}:noop:{n}"
                pipe.set(job_key_prefix + jid, serialize_job("noop", (n,), {}, None, now,
                                                             serializer=serialize),
                         px=expires_extra_ms, nx=True)
                pipe.zadd(queue, {jid: now}, nx=True)
            await pipe.execute()
        while await client.zcard(queue):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        await client.aclose()
        return count / elapsed
    finally:
        stop(*procs)


async def run(count: int) -> None:
    database, redis = urls()
    await fresh_database(database)
    await prepare(database)
    noop1 = await noop_rate(redis, count, 1)
    noop2 = await noop_rate(redis, count, 2)
    # Each capture also owes a payment_received mail: give it a server that takes it.
    smtp_port = free_port()
    sink = start([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}",
                  "-c", "aiosmtpd.handlers.Sink"], env("", redis, "sink"))
    os.environ["SMTP_PORT"] = str(smtp_port)
    try:
        settle1 = await settle_rate(database, redis, count, 1)
        settle2 = await settle_rate(database, redis, count, 2)
    finally:
        stop(sink)
    print(f"settlement of {count} captures: 1 worker {settle1:,.0f}/s, 2 workers "
          f"{settle2:,.0f}/s; arq no-op 1 worker {noop1:,.0f}/s, 2 workers {noop2:,.0f}/s\n"
          f"  settle(1)/noop(1) {settle1 / noop1:.2f} (goal >= 0.5); "
          f"settle(2)/settle(1) {settle2 / settle1:.2f} (goal >= 1.6); "
          f"settle(2)/noop(1) {settle2 / noop1:.2f}; noop(2)/noop(1) {noop2 / noop1:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4_000)
    asyncio.run(run(parser.parse_args().events))


if __name__ == "__main__":
    main()
