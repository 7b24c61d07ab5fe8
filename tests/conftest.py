"""Fixtures: a fresh PostgreSQL database and Redis keyspace per run, real servers only.

`make test` points DATABASE_URL and REDIS_URL at servers that answer (starting
private ones when needed). Each test run creates its own database, migrates
it, and drops it at the end; each test starts from empty tables and its own
queue name, so nothing depends on state left by hand or by another test.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from core.db import create_pool
from core.services import WorkerContext
from core.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, Settings
from ledger.inbox import Handlers, Registration
from processors.stripe.events import HANDLERS
from processors.stripe.settings import StripeSettings, stripe_settings
from sandbox.events import SECRET
from worker.app import create_app
from worker.migrate import migrate
from worker.runner import build_worker
from worker.services import make_processors, make_services

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Links:
    """How links are written (`ledger.context.Urls`), for a test that calls the books
    directly: what a transaction's `Known` carries."""

    public_url: str = "http://settle.test"
    can_pay: bool = True


LINKS = Links()
SETTLE = str(Path(sys.executable).parent / "settle")
# Tests flush this Redis database; keep it away from a developer's db 0. Two runs at once
# on one Redis (two checkouts) each need their own: SETTLE_TEST_REDIS_DB.
TEST_REDIS_DB = int(os.environ.get("SETTLE_TEST_REDIS_DB", "13"))

# Retry delays for tests that retry on purpose (Settings.retry_base_seconds): short, and
# still doubling per attempt as a deployment's do.
FAST_RETRIES = 0.01

PROBE_TABLE = """create table if not exists test_probe_effects (
    id serial primary key, event_id text not null, created_at timestamptz default now())"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    base = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    url = with_path(base, f"/settle_test_{uuid.uuid4().hex[:10]}")
    asyncio.run(migrate(url))  # creates the database, then migrates it

    async def probe_table() -> None:
        conn = await asyncpg.connect(url)
        await conn.execute(PROBE_TABLE)
        await conn.close()

    asyncio.run(probe_table())
    yield url
    asyncio.run(drop_database(url))


async def drop_database(url: str) -> None:
    admin = await asyncpg.connect(with_path(url, "/postgres"))
    name = urlsplit(url).path.lstrip("/")
    await admin.execute(f'drop database if exists "{name}" with (force)')
    await admin.close()


@pytest.fixture(scope="session")
def redis_url() -> str:
    return with_path(os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL, f"/{TEST_REDIS_DB}")


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[Any]:
    from tests.mailserver import start

    handler, controller = start()
    yield handler, controller.port
    controller.stop()


@pytest.fixture
def mail(smtp_server: Any) -> Any:
    """The SMTP server every test's settings point at, emptied and answering 250."""
    handler, _ = smtp_server
    handler.received.clear()
    handler.answer = None
    handler.refused = 0
    handler.refused_ids.clear()
    handler.data_delay = handler.quit_delay = 0.0
    handler.generation += 1
    return handler


def retry_base(request: pytest.FixtureRequest, default: float) -> float:
    """The test's retry delays: `@pytest.mark.retry_base_seconds(30)` on a test (or a
    module's `pytestmark`) sets Settings.retry_base_seconds, the one knob of every backoff."""
    marker = request.node.get_closest_marker("retry_base_seconds")
    return float(marker.args[0]) if marker is not None else default


@pytest.fixture
def settings(request: pytest.FixtureRequest, database_url: str, redis_url: str,
             smtp_server: Any, mail: Any) -> Settings:
    return Settings(
        retry_base_seconds=retry_base(request, Settings().retry_base_seconds),
        smtp_host="127.0.0.1",
        smtp_port=smtp_server[1],
        database_url=database_url,
        redis_url=redis_url,
        queue_name=f"settle-test-{uuid.uuid4().hex[:8]}",
        api_tokens=("test-token",),
        processors={"stripe": StripeSettings(webhook_secrets=(SECRET,))},
        inbox_sweep_seconds=1,
        inbox_sweep_after_seconds=0,
        job_timeout_seconds=5,
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool for the test's own assertions; tables are emptied first."""
    pool = await create_pool(database_url, min_size=1, max_size=4)
    await pool.execute(
        """truncate events, test_probe_effects, outbox, credit_entries, credit_balances,
                    webhook_endpoints, webhook_sequences, ops_jobs,
                    payments, invoices, customers restart identity cascade"""
    )
    yield pool
    await pool.close()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def client(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool) -> TestClient:
    return await aiohttp_client(create_app(settings))


# --- workers -----------------------------------------------------------------------


def handlers_with(**extra: Any) -> dict[str, Handlers]:
    """The service's handlers plus test ones for events through /webhooks/stripe:
    handlers_with(**{"type": Registration(...)})."""
    return {"stripe": {**HANDLERS, **extra}}


def worker_ctx(settings: Settings, pool: asyncpg.Pool, queue: Any) -> WorkerContext:
    """What a job is given, for calling one directly (no arq worker)."""
    return {"settings": settings, "redis": queue, "job_try": 1, "handlers": handlers_with(),
            "services": make_services(settings, pool, queue, make_processors(settings))}


async def run_burst(settings: Settings,
                    handlers: Mapping[str, Handlers] | None = None) -> None:
    """Run an in-process worker until the queue is empty (no crons: they would refill it)."""
    ctx: dict[str, Any] = {"settings": settings, "handlers": handlers or handlers_with()}
    worker = build_worker(settings, burst=True, handle_signals=False, ctx=ctx, poll_delay=0.02,
                          cron_jobs=[])
    try:
        await worker.main()
    finally:
        await worker.close()


async def drain(settings: Settings, db: asyncpg.Pool) -> None:
    """Run what is owed to its end, for a test to assert that nothing more happens: the
    queue run to empty by a burst worker (deferred jobs included: it waits for them),
    after which no event waits to be applied and no side effect is owed or under way.
    Stop any other worker first, or it may take up work after this returns."""
    await run_burst(settings)
    left = await db.fetchrow(
        """select (select count(*) from events where status = 'pending') as events,
                  (select count(*) from outbox where status = 'pending') as outbox""")
    assert (left["events"], left["outbox"]) == (0, 0), f"owed after the queue ran dry: {left}"


@pytest.fixture
async def svc(client: TestClient, settings: Settings, db: asyncpg.Pool) -> Any:
    from tests.service import Service

    service = Service(client, settings, db)
    await service.customer()
    return service


# A merchant who named itself and its details (the pages, mails and PDFs show them).
MERCHANT_DETAILS = ("Acme Trading Ltd", "1 High Street, London EC1A 1AA", "VAT GB123456789")


@pytest.fixture
async def merchant(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool) -> Any:
    """The service of a merchant who named itself ("Acme") and its details."""
    from tests.service import Service

    configured = replace(settings, merchant_name="Acme", merchant_details=MERCHANT_DETAILS,
                         public_url="http://settle.test")
    service = Service(await aiohttp_client(create_app(configured)), configured, db)
    await service.customer()
    return service


@pytest.fixture
async def standin(aiohttp_server: Any) -> Any:
    """The local Stripe stand-in, listening on a free port."""
    from sandbox.stripe import StripeStandIn

    stand_in = StripeStandIn()
    server = await aiohttp_server(stand_in.app())
    stand_in.base = str(server.make_url("")).rstrip("/")
    return stand_in


@pytest.fixture
async def paying(request: pytest.FixtureRequest, aiohttp_client: Any, settings: Settings,
                 db: asyncpg.Pool, standin: Any) -> Any:
    """The service talking to the Stripe stand-in, with short retry delays (unless the test
    marks its own)."""
    from tests.service import Service

    configured = replace(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                         public_url="http://settle.test",
                         retry_base_seconds=retry_base(request, FAST_RETRIES))
    service = Service(await aiohttp_client(create_app(configured)), configured, db)
    await service.customer()
    return service


@contextlib.asynccontextmanager
async def running_worker(settings: Settings,
                         handlers: Mapping[str, Handlers] | None = None) -> AsyncIterator[None]:
    """An in-process worker, crons included, for as long as the block runs."""
    ctx: dict[str, Any] = {"settings": settings, "handlers": handlers or handlers_with()}
    worker = build_worker(settings, handle_signals=False, ctx=ctx, poll_delay=0.02)
    task = asyncio.create_task(worker.async_run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        # Let the jobs still running finish (a mail accepted but not yet recorded, say):
        # close() cancels whatever is left, and gathering a cancelled job raises.
        running = [job for job in worker.tasks.values() if not job.done()]
        if running:
            await asyncio.wait(running, timeout=settings.job_timeout_seconds + 1)
        await worker.close()


async def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value {value!r})")
        await asyncio.sleep(interval)


async def wait_until_answers(http: Any, path: str, timeout: float = 30) -> None:
    """Until a process just started answers 200 at `path`."""
    import aiohttp

    async def answers() -> bool:
        try:
            async with http.get(path) as response:
                return bool(response.status == 200)
        except aiohttp.ClientConnectionError:
            return False

    await wait_for(answers, timeout=timeout)


def process_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for a real `settle` process with these settings."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "QUEUE_NAME": settings.queue_name,
        "STRIPE_WEBHOOK_SECRETS": ",".join(stripe_settings(settings).webhook_secrets),
        "API_TOKENS": ",".join(settings.api_tokens),
        "INBOX_SWEEP_SECONDS": str(settings.inbox_sweep_seconds),
        "INBOX_SWEEP_AFTER_SECONDS": str(settings.inbox_sweep_after_seconds),
        "JOB_TIMEOUT_SECONDS": str(settings.job_timeout_seconds),
        "SMTP_HOST": settings.smtp_host,
        "SMTP_PORT": str(settings.smtp_port),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", ""),
        "PYTHONPATH": str(ROOT),
        "PUBLIC_URL": settings.public_url,
        "OVERPAYMENT_POLICY": settings.overpayment_policy,
        "RETRY_BASE_SECONDS": str(settings.retry_base_seconds),
    })
    for name, value in (("STRIPE_API_KEY", stripe_settings(settings).api_key),
                        ("STRIPE_API_BASE", stripe_settings(settings).api_base)):
        if value:
            env[name] = value
    env.update(extra)
    return env


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)


def with_stripe(settings: Settings, **changes: Any) -> Settings:
    """`settings` with Stripe's own changed (api_key=, api_base=, webhook_secrets=)."""
    own = dataclasses.replace(stripe_settings(settings), **changes)
    return dataclasses.replace(settings, processors={**settings.processors, "stripe": own})
