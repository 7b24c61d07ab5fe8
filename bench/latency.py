"""Acknowledgement latency of POST /webhooks/stripe at a fixed 200 requests/s.

Open loop: each request is sent at its scheduled time whatever the previous
ones are doing, so a slow answer cannot hide the ones queued behind it.

    python -m bench.latency [--rate 200] [--seconds 10] [--runs 5]

Each run measures bare aiohttp, `settle web`, and a `settle web` that writes each delivery
alone (INTAKE_MAX_BATCH=1, no group commit); first, the disk's own fdatasync latency, so
what is settle's can be told from what is the disk's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import aiohttp
import asyncpg

from bench.common import (
    capture_event, env, free_port, fresh_database, signed_line, start, start_bare_and_web, stop,
    urls, wait_port)


async def measure(port: int, lines: list[str], rate: int) -> list[float]:
    latencies: list[float] = []
    statuses: list[int] = []
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as http:
        async def one(line: str) -> None:
            signature, body = line.split("\t", 1)
            started = time.perf_counter()
            async with http.post("/webhooks/stripe", data=body.encode(), headers={
                    "Stripe-Signature": signature, "Content-Type": "application/json"}) as r:
                await r.read()
                statuses.append(r.status)
            latencies.append(time.perf_counter() - started)

        tasks = []
        begin = time.perf_counter()
        for i, line in enumerate(lines):
            delay = begin + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(line)))
        await asyncio.gather(*tasks)
    if set(statuses) != {200}:
        sys.exit(f"bench: answers other than 200: {sorted(set(statuses))}")
    return sorted(latencies)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    database, redis = urls()
    asyncio.run(fresh_database(database))
    count = args.rate * args.seconds
    lines = [signed_line(capture_event(f"inv_{i % 100}", 1_000))
             for i in range(count * 3 * args.runs)]
    print(disk_figure(database))
    bare_port, web_port, processes = start_bare_and_web(database, redis, "bench-latency")
    single_port = free_port()
    processes.append(start(["settle", "web"], env(database, redis, "bench-latency",
                                                  PORT=str(single_port), INTAKE_MAX_BATCH="1")))
    wait_port(single_port)
    met = 0
    try:
        for run in range(args.runs):
            mine = lines[count * 3 * run:count * 3 * (run + 1)]
            bare_lat = asyncio.run(measure(bare_port, mine[:count], args.rate))
            web_lat = asyncio.run(measure(web_port, mine[count:2 * count], args.rate))
            # Other events (new ones: the same work), each written alone.
            single_lat = asyncio.run(measure(single_port, mine[2 * count:], args.rate))
            p99 = percentile(web_lat, 0.99)
            met += p99 <= 25
            print(f"latency run {run + 1} at {args.rate} req/s for {args.seconds} s: settle web "
                  f"p50 {percentile(web_lat, 0.5):.1f} ms, p99 {p99:.1f} ms; one write per "
                  f"delivery (INTAKE_MAX_BATCH=1) p50 {percentile(single_lat, 0.5):.1f} ms, p99 "
                  f"{percentile(single_lat, 0.99):.1f} ms; bare aiohttp p50 "
                  f"{percentile(bare_lat, 0.5):.1f} ms, p99 {percentile(bare_lat, 0.99):.1f} ms")
    finally:
        stop(*processes)
    print(f"latency: settle web p99 <= 25 ms in {met} of {args.runs} runs (goal: 4 of 5)")


def disk_figure(database: str) -> str:
    """How long the database's disk takes to make 8 kB durable (what every commit waits
    for), measured where PostgreSQL keeps its data when this process may write there."""
    async def data_directory() -> str:
        conn = await asyncpg.connect(database)
        try:
            return str(await conn.fetchval("show data_directory"))
        except asyncpg.InsufficientPrivilegeError:
            return "."
        finally:
            await conn.close()

    folder = asyncio.run(data_directory())
    if not os.access(folder, os.W_OK):
        folder = "."
    path = os.path.join(folder, f"settle-bench-fsync-{os.getpid()}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    block, times = os.urandom(8192), []
    try:
        for i in range(2000):
            os.pwrite(fd, block, (i % 128) * 8192)
            started = time.perf_counter()
            os.fdatasync(fd)
            times.append(time.perf_counter() - started)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return (f"disk: fdatasync of 8 kB in {folder}, 2000 times: p50 {percentile(times, 0.5):.2f} "
            f"ms, p99 {percentile(times, 0.99):.2f} ms, max {times[-1] * 1000:.1f} ms")


if __name__ == "__main__":
    main()
