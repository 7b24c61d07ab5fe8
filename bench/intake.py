"""Intake: signed unique events recorded per second by one `web` process, against a bare
aiohttp endpoint that reads the body and answers 200, by the same load generator (wrk).

Stripe's single events (`payment_intent.succeeded`, 2 KB), then GoCardless's batches of
thin `payments.confirmed` events (1, 50 and 250 to a body; GoCardless sends up to 250),
each body posted once. Every figure is a ratio against the bare endpoint's requests per
second with Stripe's events, measured in the same run; the bare endpoint is measured with
each GoCardless body size too, since reading a 250-event body costs it more than a 2 KB one.

    python -m bench.intake [--seconds 10] [--connections 32] [--events 120000]
                           [--batch-events 1000000] [--sizes 1,50,250]
                                                           (make bench runs it with the others)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import asyncpg

from bench.common import (
    capture_event, fresh_database, gocardless_line, signed_line, start_bare_and_web, stop, urls)

THREADS = 2


@dataclass(frozen=True)
class Run:
    """What one wrk run measured: bodies answered per second, in all and not 200."""

    rate: float
    requests: int
    refused: int


def wrk(port: int, route: str, header: str, path: str, seconds: int,
        connections: int) -> Run:
    done = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "-s", "bench/intake.lua",
         f"http://127.0.0.1:{port}{route}", "--", path, str(THREADS), header],
        capture_output=True, text=True, check=True)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", done.stdout).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    return Run(rate, requests, int(bad.group(1)) if bad else 0)


async def recorded_then_cleared(database: str) -> int:
    """The events the last run recorded; the table emptied for the next run. Bodies still
    being written when wrk stopped are waited for (the count holds still for half a
    second), so none is counted in the next run."""
    conn = await asyncpg.connect(database)
    try:
        rows = -1
        while rows != (rows := int(await conn.fetchval("select count(*) from events"))):
            await asyncio.sleep(0.5)
        await conn.execute("truncate events")
        return rows
    finally:
        await conn.close()


def bodies_file(lines: int, line: Callable[[int], str]) -> str:
    """A file of `lines` signed bodies for bench/intake.lua, the i-th `line(i)`."""
    with tempfile.NamedTemporaryFile("w", suffix=".bodies", delete=False) as file:
        for i in range(lines):
            file.write(line(i) + "\n")
    return file.name


def batch_line(size: int, _: int) -> str:
    return gocardless_line(size)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--events", type=int, default=120_000,
                        help="unique events written for Stripe's run, and for single-event "
                             "GoCardless bodies")
    parser.add_argument("--batch-events", type=int, default=1_000_000,
                        help="unique events written for each GoCardless batch size above 1")
    parser.add_argument("--sizes", default="1,50,250",
                        help="GoCardless events per body, comma-separated")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing; install it with: sudo apt-get install wrk")
    sizes = [int(size) for size in args.sizes.split(",")]
    database, redis = urls()
    asyncio.run(fresh_database(database))
    stripe = bodies_file(args.events, lambda i: signed_line(capture_event(f"inv_{i % 100}", 1_000)))
    bodies = {size: -(-(args.events if size == 1 else args.batch_events) // size)
              for size in sizes}
    batches = {size: bodies_file(bodies[size], partial(batch_line, size)) for size in sizes}
    bare_port, web_port, processes = start_bare_and_web(database, redis, "bench-intake")
    try:
        bare = wrk(bare_port, "/webhooks/stripe", "Stripe-Signature", stripe, args.seconds,
                   args.connections)
        web = wrk(web_port, "/webhooks/stripe", "Stripe-Signature", stripe, args.seconds,
                  args.connections)
        rows = asyncio.run(recorded_then_cleared(database))
        gocardless = {}
        for size, path in batches.items():
            bare_gc = wrk(bare_port, "/webhooks/gocardless", "Webhook-Signature", path,
                          args.seconds, args.connections)
            web_gc = wrk(web_port, "/webhooks/gocardless", "Webhook-Signature", path,
                         args.seconds, args.connections)
            gocardless[size] = (bare_gc, web_gc, asyncio.run(recorded_then_cleared(database)))
    finally:
        stop(*processes)
        for path in (stripe, *batches.values()):
            os.unlink(path)  # hundreds of megabytes each

    run = f"wrk -t{THREADS} -c{args.connections} -d{args.seconds}s"
    print(f"intake ({run}): bare aiohttp {bare.rate:,.0f} req/s (Stripe's bodies)")
    print(f"  stripe, 1 event a body: {web.rate:,.0f} events/s ({rows:,} recorded, "
          f"{web.refused} non-200); ratio {web.rate / bare.rate:.2f} (goal >= 0.5)")
    for size, (bare_gc, web_gc, recorded) in gocardless.items():
        # wrk wraps round a file that runs out: the bodies after that are duplicates.
        wrapped = " (the file ran out: raise --events or --batch-events)" \
            if web_gc.requests > bodies[size] else ""
        events = web_gc.rate * size
        print(f"  gocardless, {size} event{'s' if size > 1 else ''} a body: "
              f"{events:,.0f} events/s, {web_gc.rate:,.1f} bodies/s ({recorded:,} recorded, "
              f"{web_gc.refused} non-200){wrapped}; against bare's {bare.rate:,.0f} req/s: "
              f"events {events / bare.rate:.2f}, bodies {web_gc.rate / bare.rate:.3f}; "
              f"bare with these bodies {bare_gc.rate:,.0f} req/s "
              f"(bodies {web_gc.rate / bare_gc.rate:.2f} of it)")


if __name__ == "__main__":
    main()
