"""Intake: signed unique events accepted per second by one `web` process, against a bare
aiohttp endpoint that reads the body and answers 200, by the same load generator (wrk).

    python -m bench.intake [--seconds 10] [--connections 32]     (make bench runs all three)
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile

import asyncpg

from bench.common import (
    capture_event, fresh_database, signed_line, start_bare_and_web, stop, urls)

THREADS = 2


def wrk(port: int, path: str, seconds: int, connections: int) -> tuple[float, int]:
    done = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{connections}", f"-d{seconds}s", "-s", "bench/intake.lua",
         f"http://127.0.0.1:{port}/webhooks/stripe", "--", path, str(THREADS)],
        capture_output=True, text=True, check=True)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", done.stdout)
    return rate, int(bad.group(1)) if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--events", type=int, default=120_000)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("bench: wrk is missing; install it with: sudo apt-get install wrk")
    database, redis = urls()
    asyncio.run(fresh_database(database))
    with tempfile.NamedTemporaryFile("w", suffix=".events", delete=False) as file:
        for i in range(args.events):
            file.write(signed_line(capture_event(f"inv_{i % 100}", 1_000)) + "\n")
    bare_port, web_port, processes = start_bare_and_web(database, redis, "bench-intake")
    try:
        bare_rate, _ = wrk(bare_port, file.name, args.seconds, args.connections)
        web_rate, refused = wrk(web_port, file.name, args.seconds, args.connections)
    finally:
        stop(*processes)

    async def recorded() -> int:
        conn = await asyncpg.connect(database)
        try:
            return int(await conn.fetchval("select count(*) from events"))
        finally:
            await conn.close()

    rows = asyncio.run(recorded())
    print(f"intake: bare aiohttp {bare_rate:,.0f} req/s; settle web {web_rate:,.0f} events/s "
          f"({rows:,} recorded, {refused} non-200); ratio {web_rate / bare_rate:.2f} "
          f"(goal >= 0.5); wrk -t{THREADS} -c{args.connections} -d{args.seconds}s")


if __name__ == "__main__":
    main()
