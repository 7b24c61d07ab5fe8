"""Acknowledgement latency of POST /webhooks/stripe at a fixed 200 requests/s.

Open loop: each request is sent at its scheduled time whatever the previous
ones are doing, so a slow answer cannot hide the ones queued behind it.

    python -m bench.latency [--rate 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiohttp

from bench.common import (
    capture_event, fresh_database, signed_line, start_bare_and_web, stop, urls)


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
    parser.add_argument("--seconds", type=int, default=20)
    args = parser.parse_args()
    database, redis = urls()
    asyncio.run(fresh_database(database))
    count = args.rate * args.seconds
    lines = [signed_line(capture_event(f"inv_{i % 100}", 1_000)) for i in range(count * 2)]
    bare_port, web_port, processes = start_bare_and_web(database, redis, "bench-latency")
    try:
        bare_lat = asyncio.run(measure(bare_port, lines[:count], args.rate))
        web_lat = asyncio.run(measure(web_port, lines[count:], args.rate))
    finally:
        stop(*processes)
    print(f"latency at {args.rate} req/s for {args.seconds} s: settle web p50 "
          f"{percentile(web_lat, 0.5):.1f} ms, p99 {percentile(web_lat, 0.99):.1f} ms "
          f"(goal p99 <= 25 ms); bare aiohttp p50 {percentile(bare_lat, 0.5):.1f} ms, "
          f"p99 {percentile(bare_lat, 0.99):.1f} ms")


if __name__ == "__main__":
    main()
