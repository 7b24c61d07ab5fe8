"""What the benchmarks share: a fresh database, processes, signed events."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import uuid
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from sandbox.events import event, signed, stripe_object
from sandbox.gocardless import gocardless_event, new_id
from processors.gocardless.signature import sign
from worker.migrate import migrate
from core.queue import enqueue_many, queue_client
from core.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET = "whsec_bench"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def urls() -> tuple[str, str]:
    database = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    parts = urlsplit(database)
    database = urlunsplit((parts.scheme, parts.netloc, "/settle_bench", "", ""))
    redis = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    parts = urlsplit(redis)
    return database, urlunsplit((parts.scheme, parts.netloc, "/12", "", ""))


async def fresh_database(url: str) -> None:
    parts = urlsplit(url)
    admin = await asyncpg.connect(urlunsplit((parts.scheme, parts.netloc, "/postgres", "", "")))
    await admin.execute('drop database if exists "settle_bench" with (force)')
    await admin.close()
    await migrate(url)


def env(database: str, redis: str, queue: str, **extra: str) -> dict[str, str]:
    values = dict(os.environ, DATABASE_URL=database, REDIS_URL=redis, QUEUE_NAME=queue,
                  STRIPE_WEBHOOK_SECRETS=SECRET, GOCARDLESS_WEBHOOK_SECRETS=SECRET,
                  API_TOKENS="bench",
                  PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", PYTHONPATH=str(ROOT))
    values.update(extra)
    return values


def start(args: list[str], environment: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, env=environment, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def stop(*processes: subprocess.Popen[bytes]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def capture_event(invoice_id: str, amount: int) -> dict[str, object]:
    """A realistic paying event: a PaymentIntent of its own for an invoice."""
    intent = stripe_object("payment_intent", id=f"pi_{uuid.uuid4().hex[:24]}", amount=amount,
                           amount_received=amount, currency="usd", status="succeeded",
                           metadata={"invoice_id": invoice_id})
    return event("payment_intent.succeeded", intent)


def signed_line(item: dict[str, object]) -> str:
    raw, headers = signed(item, SECRET)
    return f"{headers['Stripe-Signature']}\t{raw.decode()}"


def gocardless_line(size: int, invoices: int = 100) -> str:
    """One signed GoCardless delivery of `size` thin `payments.confirmed` events, each of
    its own payment on one of `invoices` invoices (the stand-in's shape: its event made
    once, then only its ids changed, so a file of a million is quick to write), as a line
    for bench/intake.lua."""
    events = []
    for _ in range(size):
        payment = new_id("PM")
        events.append({**_gocardless_template(), "id": new_id("EV"), "links": {"payment": payment},
                       "resource_metadata": {"invoice_id": f"inv_{int(payment[2:]) % invoices}"}})
    body = orjson.dumps({"events": events})
    return f"{sign(body, SECRET)}\t{body.decode()}"


@cache
def _gocardless_template() -> dict[str, Any]:
    return gocardless_event("payments", "confirmed", payment="PM0")


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def start_bare_and_web(database: str, redis: str,
                       queue: str) -> tuple[int, int, list[subprocess.Popen[bytes]]]:
    """The baseline endpoint and one `settle web`, both listening: (bare, web, processes)."""
    bare_port, web_port = free_port(), free_port()
    processes = [
        start([sys.executable, "-m", "bench.bare", str(bare_port)], env(database, redis, "b")),
        start(["settle", "web"], env(database, redis, queue, PORT=str(web_port))),
    ]
    wait_port(bare_port)
    wait_port(web_port)
    time.sleep(1)
    return bare_port, web_port, processes


async def wait_ready(redis_url: str, queue: str, workers: int) -> None:
    client = queue_client(redis_url, queue)
    try:
        for _ in range(200):
            if await client.exists(f"{queue}:health-check"):
                await asyncio.sleep(0.5 * workers)
                return
            await asyncio.sleep(0.1)
        sys.exit("bench: workers did not start")
    finally:
        await client.aclose()


async def outbox_rate(database: str, redis: str, ids: list[int], what: str,
                      **extra: str) -> float:
    """Owed outbox rows performed per second by one `settle worker` (with `extra` in its
    environment), from queueing their jobs to the last one ending; exits if any failed."""
    queue = f"bench-{what}-{uuid.uuid4().hex[:6]}"
    worker = start(["settle", "worker"], env(database, redis, queue, **extra))
    try:
        await wait_ready(redis, queue, 1)
        client = queue_client(redis, queue)
        conn = await asyncpg.connect(database)
        started = time.perf_counter()
        for i in range(0, len(ids), 500):
            await enqueue_many(client, "outbox", ids[i:i + 500])
        while await conn.fetchval("select count(*) from outbox where status = 'pending'"):
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        failed = await conn.fetchval("select count(*) from outbox where status = 'failed'")
        await conn.close()
        await client.aclose()
        if failed:
            sys.exit(f"bench: {failed} of the {what} failed")
        return len(ids) / elapsed
    finally:
        stop(worker)
