"""Driving settle as its users do: the /v1 API and signed webhooks, then a worker run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from urllib.parse import urlsplit

import asyncpg
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient

from tests.conftest import run_burst
from sandbox.events import signed
from core.settings import Settings

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Service:
    client: TestClient
    settings: Settings
    db: asyncpg.Pool

    async def call(self, method: str, path: str, body: Any = None,
                   expect: int | None = 200) -> Any:
        response = await self.client.request(method, path, json=body, headers=AUTH)
        payload = await response.json()
        if expect is not None:
            assert response.status == expect, (response.status, payload)
        return payload

    async def customer(self, customer_id: str = "cus_1", email: str = "pay@example.com") -> Any:
        return await self.call("PUT", f"/v1/customers/{customer_id}",
                               {"email": email, "name": "Ada"}, expect=None)

    async def invoice(self, invoice_id: str, total: int, *, customer_id: str = "cus_1",
                      send: bool = True, **fields: Any) -> Any:
        body = {"customer_id": customer_id, "number": f"N-{invoice_id}", "currency": "usd",
                "total": total, **fields}
        invoice = await self.call("PUT", f"/v1/invoices/{invoice_id}", body, expect=201)
        if send:
            invoice = await self.call("POST", f"/v1/invoices/{invoice_id}/send")
        return invoice

    async def get_invoice(self, invoice_id: str) -> Any:
        return await self.call("GET", f"/v1/invoices/{invoice_id}")

    async def balance(self, customer_id: str = "cus_1") -> dict[str, int]:
        return (await self.call("GET", f"/v1/customers/{customer_id}"))["credit_balance"]  # type: ignore[no-any-return]

    async def deliver(self, *events: dict[str, Any], settle: bool = True) -> None:
        for event in events:
            raw, headers = signed(event)
            response = await self.client.post("/webhooks/stripe", data=raw, headers=headers)
            assert response.status == 200, await response.text()
        if settle:
            await self.settle()

    async def request(self, invoice_id: str, amount: int, expect: int | None = 201,
                      **fields: Any) -> Any:
        body = {"amount": amount, "to": "payer@example.com", **fields}
        return await self.call("POST", f"/v1/invoices/{invoice_id}/payment-requests", body,
                               expect=expect)

    async def open_link(self, url: str) -> ClientResponse:
        """What a customer's browser gets for a pay link (redirects not followed)."""
        return await self.client.get(urlsplit(url).path, allow_redirects=False)

    async def settle(self) -> None:
        await run_burst(self.settings)

    async def event_status(self, event_id: str) -> asyncpg.Record:
        return await self.db.fetchrow(
            "select status, reason, attempts from events where event_id = $1", event_id)


@dataclass
class RawAnswer:
    status: int
    headers: dict[str, str]  # lowercased names
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


async def raw_request(client: TestClient, method: str, path: str,
                      headers: list[tuple[bytes, bytes]], body: bytes = b"") -> RawAnswer:
    """One request written byte for byte: header values no HTTP client would send (bytes
    that are not UTF-8), exactly as a hostile sender can."""
    import asyncio

    server = client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        head = [f"{method} {path} HTTP/1.1".encode(), b"Host: settle.test",
                b"Connection: close", b"Content-Length: %d" % len(body)]
        head += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    top, _, rest = answer.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    parsed = {}
    for line in lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return RawAnswer(int(status_line.split()[1]), parsed, rest)
