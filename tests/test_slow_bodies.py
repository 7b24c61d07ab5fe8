"""A slow client never holds the process (CONTRACT §11): a body not in full within the
deadline is cut off with 408, and the bodies anyone may send are read a bounded
number at a time."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from core.settings import Settings
from handlers.keys import BODY_READS
from sandbox.events import event, signed
from tests.conftest import ROOT, SETTLE, free_port, process_env, replace, wait_until_answers
from worker.app import create_app

AUTH = {"Authorization": "Bearer test-token"}


class Trickle:
    """One connection that sends its headers, then a body a byte at a time, forever."""

    def __init__(self, port: int, path: str, headers: str = "") -> None:
        self.port, self.path, self.headers = port, path, headers
        self.answer = b""
        self._sending: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"POST {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          f"Content-Length: 1000000\r\n{self.headers}\r\n".encode())
        await self.writer.drain()
        self._sending = asyncio.create_task(self._send())

    async def _send(self) -> None:
        with contextlib.suppress(ConnectionError):
            while True:
                self.writer.write(b"x")
                await self.writer.drain()
                await asyncio.sleep(0.2)

    async def answered(self) -> bytes:
        """Everything the server sent, up to its closing the connection."""
        self.answer = await asyncio.wait_for(self.reader.read(), 30)
        return self.answer

    async def close(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending
        self.writer.close()


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@contextlib.asynccontextmanager
async def trickling(client: TestClient, path: str, count: int,
                    headers: str = "") -> AsyncIterator[list[Trickle]]:
    assert client.port is not None
    slow = [Trickle(client.port, path, headers) for _ in range(count)]
    try:
        for one in slow:
            await one.open()
        yield slow
    finally:
        for one in slow:
            await one.close()


async def slow_client(aiohttp_client: Any, settings: Settings, **changes: Any) -> TestClient:
    return await aiohttp_client(create_app(replace(settings, body_timeout_seconds=1, **changes)))  # type: ignore[no-any-return]


async def test_a_trickled_webhook_body_is_cut_off_with_408_and_its_connection_closed(
        aiohttp_client: Any, settings: Settings, db: asyncpg.Pool) -> None:
    client = await slow_client(aiohttp_client, settings)
    async with trickling(client, "/webhooks/stripe", 1,
                         "Content-Type: application/json\r\n") as (slow,):
        answer = await slow.answered()  # read() returns only once the server closed
    assert status(answer) == 408
    assert b'"request_timeout"' in answer
    assert slow.reader.at_eof()
    assert await db.fetchval("select count(*) from events") == 0


async def test_a_trickled_api_body_is_cut_off_with_408(aiohttp_client: Any,
                                                       settings: Settings,
                                                       db: asyncpg.Pool) -> None:
    client = await slow_client(aiohttp_client, settings)
    async with trickling(client, "/v1/customers/c1", 1,
                         "Authorization: Bearer test-token\r\n"
                         "Content-Type: application/json\r\n") as (slow,):
        answer = await slow.answered()
    assert status(answer) == 408
    assert b'"request_timeout"' in answer


async def test_a_trickled_page_form_is_cut_off_with_a_408_page(aiohttp_client: Any,
                                                               settings: Settings,
                                                               db: asyncpg.Pool) -> None:
    client = await slow_client(aiohttp_client, settings)
    for action in ("pay", "credit"):
        async with trickling(client, f"/i/{'t' * 24}/{action}", 1,
                             "Content-Type: application/x-www-form-urlencoded\r\n"
                             "Origin: http://127.0.0.1\r\n") as (slow,):
            answer = await slow.answered()
        assert status(answer) == 408, action
        assert b"text/html" in answer and b"no-store" in answer


async def test_many_trickling_bodies_hold_neither_health_nor_other_requests(
        aiohttp_client: Any, settings: Settings, db: asyncpg.Pool) -> None:
    client = await slow_client(aiohttp_client, settings)
    async with trickling(client, "/webhooks/stripe", 40) as slow:
        # All 40 are being read (each holds a slot) before the others ask. (A Semaphore
        # says how many slots are free only through _value.)
        await _until(lambda: client.app[BODY_READS]._value == 64 - 40)  # type: ignore[union-attr]
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 200
        raw, headers = signed(event("settle.test_probe", {"object": "probe"}))
        assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200
        created = await client.put("/v1/customers/c1", json={"email": "a@example.com"},
                                   headers=AUTH)
        assert created.status == 201
        answers = await asyncio.gather(*(one.answered() for one in slow))
    assert {status(answer) for answer in answers} == {408}


async def test_past_the_bound_an_anonymous_body_is_refused_at_once_with_retry_after(
        aiohttp_client: Any, settings: Settings, db: asyncpg.Pool) -> None:
    client = await slow_client(aiohttp_client, settings, body_reads_max=3)
    async with trickling(client, "/webhooks/stripe", 3) as slow:
        await _until(lambda: client.app[BODY_READS].locked())  # type: ignore[union-attr]
        raw, headers = signed(event("settle.test_probe", {"object": "probe"}))
        refused = await client.post("/webhooks/stripe", data=raw, headers=headers)
        assert refused.status == 503
        assert refused.headers["Retry-After"] == "1"
        assert (await refused.json())["error"]["code"] == "unavailable"
        page = await client.post(f"/i/{'t' * 24}/pay", data={"amount": "1"})
        assert page.status == 503 and page.content_type == "text/html"
        # The API's bodies are read after their token is checked: they take no slot.
        created = await client.put("/v1/customers/c1", json={"email": "a@example.com"},
                                   headers=AUTH)
        assert created.status == 201
        await asyncio.gather(*(one.answered() for one in slow))
    # The slots are free again once the slow bodies were cut off.
    assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200


async def _until(predicate: Any) -> None:
    for _ in range(300):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met")


async def test_a_real_web_process_cuts_trickled_bodies_and_answers_health_meanwhile(
        settings: Settings, db: asyncpg.Pool) -> None:
    port = free_port()
    web = subprocess.Popen([SETTLE, "web"], cwd=ROOT, stderr=subprocess.DEVNULL,
                           env=process_env(settings, PORT=str(port), BODY_TIMEOUT_SECONDS="1"))
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await wait_until_answers(http, "/healthz")
            slow = [Trickle(port, "/webhooks/stripe") for _ in range(40)]
            for one in slow:
                await one.open()
            try:
                # A connection of its own (force_close), never one queued behind the slow.
                async with aiohttp.ClientSession(
                        f"http://127.0.0.1:{port}",
                        connector=aiohttp.TCPConnector(force_close=True)) as probe:
                    async with probe.get("/healthz") as health:
                        assert health.status == 200
                    async with probe.get("/readyz") as ready:
                        assert ready.status == 200
                answers = await asyncio.gather(*(one.answered() for one in slow))
            finally:
                for one in slow:
                    await one.close()
        assert {status(answer) for answer in answers} == {408}
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=20)
