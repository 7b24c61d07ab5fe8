"""Outbound webhooks: messages delivered per second by one `worker` to a fast local
receiver, against bare aiohttp POSTing the same bodies to the same receiver (at the
same concurrency: settle sends at most `notify.webhook.PER_ENDPOINT` at once to one
endpoint per worker), measured in the same run.

The receiver is bench/bare.py (reads the body, answers 200). The clock runs from
queueing the messages' jobs to the last one recorded `done`.

    python -m bench.outbound [--messages 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp

from bench.common import env, free_port, fresh_database, outbox_rate, start, stop, urls, wait_port
from core.db import create_pool
from delivery.endpoints import new_secret
from delivery.outbound import owe_ping
from notify.webhook import PER_ENDPOINT, headers, now


async def bare_rate(url: str, count: int) -> float:
    body = json.dumps({"type": "ping", "timestamp": "2026-11-22T00:00:00+00:00",
                       "data": {"endpoint_id": "bench"}})
    secret = new_secret()
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(count):
        queue.put_nowait(i)

    async def sender(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            sent = headers((secret,), f"msg_{i}", now(), body)
            async with session.post(url, data=body.encode(), headers=sent,
                                    allow_redirects=False) as response:
                await response.read()
                assert response.status == 200

    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(sender(session) for _ in range(PER_ENDPOINT)))
    return count / (time.perf_counter() - started)


async def settle_rate(database: str, redis: str, url: str, count: int) -> float:
    pool = await create_pool(database)
    try:
        await pool.execute("truncate webhook_endpoints, outbox")
        await pool.execute("insert into webhook_endpoints (id, url, secret) values ('bench', $1, $2)",
                           url, new_secret())
        async with pool.acquire() as conn, conn.transaction():
            for _ in range(count):
                await owe_ping(conn, "bench")
        ids = [r["id"] for r in await pool.fetch("select id from outbox order by id")]
    finally:
        await pool.close()
    return await outbox_rate(database, redis, ids, "messages", OUTBOUND_ALLOW_PRIVATE="true")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()
    database, redis = urls()
    asyncio.run(fresh_database(database))
    port = free_port()
    receiver = start([sys.executable, "-m", "bench.bare", str(port)], env(database, redis, "b"))
    try:
        wait_port(port)
        url = f"http://127.0.0.1:{port}/webhooks/stripe"
        baseline = asyncio.run(bare_rate(url, args.messages))
        settle = asyncio.run(settle_rate(database, redis, url, args.messages))
    finally:
        stop(receiver)
    print(f"outbound: {args.messages} messages to one fast local endpoint, {PER_ENDPOINT} at once: "
          f"bare aiohttp {baseline:,.0f}/s, settle (1 worker) {settle:,.0f}/s "
          f"({settle / baseline:.0%} of bare)")


if __name__ == "__main__":
    main()
