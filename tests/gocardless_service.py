"""Driving settle with GoCardless beside Stripe: the GoCardless stand-in reached through
the real `gocardless-pro` client, signed batches posted to `/webhooks/gocardless`, and a
worker with every registered processor's handlers."""

from __future__ import annotations

import dataclasses
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings
from processors.gocardless.settings import GoCardlessSettings
from sandbox.gocardless import SECRET, GoCardlessStandIn, batch, signed
from tests.conftest import FAST_RETRIES, replace, retry_base, run_burst, with_stripe
from tests.service import Service
from worker.app import create_app
from worker.services import event_handlers


def with_gocardless(settings: Settings, standin: GoCardlessStandIn, **changes: Any) -> Settings:
    own = GoCardlessSettings(access_token=standin.access_token, api_base=standin.base,
                             webhook_secrets=(SECRET,))
    return dataclasses.replace(settings, processors={
        **settings.processors, "gocardless": dataclasses.replace(own, **changes)})


@dataclasses.dataclass
class GoCardlessService(Service):
    gc: GoCardlessStandIn = dataclasses.field(default_factory=GoCardlessStandIn)

    async def settle(self) -> None:
        """Every queued job run to its end, GoCardless's handlers registered too; then
        nothing is left owed."""
        await run_burst(self.settings, event_handlers())

    async def post(self, *events: dict[str, Any], expect: int = 200,
                   headers: dict[str, str] | None = None) -> Any:
        body = batch(*events)
        response = await self.client.post("/webhooks/gocardless", data=body,
                                          headers=headers if headers is not None
                                          else signed(body))
        assert response.status == expect, await response.text()
        return await response.json()

    async def deliver(self, *events: dict[str, Any], settle: bool = True) -> None:
        """GoCardless's events, one signed batch, then (by default) a worker run."""
        await self.post(*events)
        if settle:
            await self.settle()

    async def move(self, payment_id: str, *actions: str, settle: bool = True) -> None:
        """The payment moves on at GoCardless, each move's events delivered in turn."""
        for action in actions:
            await self.deliver(*self.gc.move(payment_id, action), settle=settle)

    async def payment_view(self, payment_id: str, invoice_id: str = "inv_1") -> dict[str, Any]:
        invoice = await self.get_invoice(invoice_id)
        [payment] = [p for p in invoice["payments"] if p["id"] == payment_id]
        return payment  # type: ignore[no-any-return]

    async def gbp_invoice(self, invoice_id: str = "inv_1", total: int = 10_000,
                          **fields: Any) -> Any:
        return await self.invoice(invoice_id, total, currency="gbp", **fields)

    async def events(self) -> list[asyncpg.Record]:
        return await self.db.fetch(  # type: ignore[no-any-return]
            """select processor, event_id, type, status, reason, attempts from events
               where processor = 'gocardless' order by id""")

    async def open_checkout(self, invoice_id: str = "inv_1", *,
                            token: str | None = None) -> str:
        """The invoice's Pay Now link opened through GoCardless (what the customer's choice
        of Direct Debit does): the billing request made, its id."""
        from urllib.parse import urlsplit

        from core.processor import Processor
        from handlers.keys import SERVICES
        from ledger.checkout import Redirect, open_link

        services = self.client.app[SERVICES]
        if token is None:
            pay_url = (await self.get_invoice(invoice_id))["pay_url"]
            token = urlsplit(pay_url).path.rsplit("/", 1)[1]
        processor: Processor = services.processors["gocardless"]
        opened = await open_link(services.books, token, processor, services.checkout_permit)
        assert isinstance(opened, Redirect), opened
        session_id: str = await self.db.fetchval(
            "select id from checkout_sessions where url = $1", opened.url)
        return session_id

    async def mails(self, kind: str) -> int:
        return await self.db.fetchval(  # type: ignore[no-any-return]
            "select count(*) from outbox where kind = 'email' and payload->>'kind' = $1", kind)


@pytest.fixture
async def gcstandin(aiohttp_server: Any) -> GoCardlessStandIn:
    """The GoCardless stand-in, listening on a free port."""
    stand_in = GoCardlessStandIn()
    server = await aiohttp_server(stand_in.app())
    stand_in.base = str(server.make_url("")).rstrip("/")
    return stand_in


@pytest.fixture
async def gcsvc(request: pytest.FixtureRequest, aiohttp_client: Any, settings: Settings,
                db: asyncpg.Pool, standin: Any,
                gcstandin: GoCardlessStandIn) -> GoCardlessService:
    """settle with Stripe (its stand-in; the default for checkouts) and GoCardless (its
    stand-in), short retry delays unless the test marks its own."""
    configured = replace(
        with_gocardless(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                        gcstandin),
        public_url="http://settle.test", retry_base_seconds=retry_base(request, FAST_RETRIES))
    client: TestClient[Any, Any] = await aiohttp_client(create_app(configured))
    service = GoCardlessService(client, configured, db, gcstandin)
    await service.customer()
    return service


@pytest.fixture
async def gconly(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool,
                 gcstandin: GoCardlessStandIn) -> GoCardlessService:
    """settle with GoCardless (its stand-in) configured and Stripe not (no STRIPE_API_KEY)."""
    configured = replace(with_gocardless(settings, gcstandin), public_url="http://settle.test",
                         retry_base_seconds=FAST_RETRIES)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(configured))
    service = GoCardlessService(client, configured, db, gcstandin)
    await service.customer()
    return service
