"""A second processor, unlike Stripe, live beside it: the fake of tests/fake_processor.py.

It posts batches of thin notices that name a resource, which the event job fetches
before the event's transaction opens; its rows (payments, refunds, sessions) go back
to it whatever processor new checkouts use (Stripe, the default, here).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from arq import Retry

from core.db import create_pool
from core.errors import Unavailable
from core.services import WorkerContext
from core.settings import Settings
from handlers.keys import SERVICES
from jobs.events import process_event
from sandbox.events import session_completed, signed
from tests.conftest import FAST_RETRIES, replace, with_stripe
from tests.fake_processor import FakeStore, batch, notice, registry, sign
from tests.service import Service
from tests.test_operations import reconcile
from worker.app import create_app
from worker.runner import build_worker
from worker.services import event_handlers, make_processors, make_queue, make_services


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def both(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool, standin: Any,
               store: FakeStore) -> Service:
    """The service with Stripe (the stand-in, the default for checkouts) and the fake."""
    configured = replace(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                         public_url="http://settle.test", retry_base_seconds=FAST_RETRIES)
    client: TestClient[Any, Any] = await aiohttp_client(create_app(configured, registry(store)))
    service = FakeService(client, configured, db)
    service.store = store
    await service.customer()
    return service


class FakeService(Service):
    store: FakeStore
    # What the fake takes (as the web process was told): none unless a test offers it.
    currencies: frozenset[str] = frozenset()

    async def settle(self) -> None:
        """Run every queued job to its end with the fake registered in the worker too."""
        worker = build_worker(self.settings, burst=True,
                              registry=registry(self.store, currencies=self.currencies),
                              handle_signals=False, ctx={"settings": self.settings},
                              poll_delay=0.02, cron_jobs=[])
        try:
            await worker.main()
        finally:
            await worker.close()

    async def post(self, *notices: dict[str, Any], expect: int = 200) -> Any:
        body = batch(*notices)
        response = await self.client.post("/webhooks/fake", data=body, headers=sign(body))
        assert response.status == expect, await response.text()
        return await response.json()

    async def payment(self, payment_id: str, invoice_id: str = "inv_1") -> dict[str, Any]:
        """The payment as its invoice shows it."""
        invoice = await self.get_invoice(invoice_id)
        [payment] = [p for p in invoice["payments"] if p["id"] == payment_id]
        return payment  # type: ignore[no-any-return]


@pytest.fixture
async def job_ctx(both: FakeService) -> AsyncIterator[WorkerContext]:
    """What an event job is given, with a pool the fake watches while it fetches."""
    settings = both.settings
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    queue = make_queue(settings)
    both.store.pools.append(pool)
    reg = registry(both.store)
    yield {"settings": settings, "redis": queue, "job_try": 1, "handlers": event_handlers(reg),
           "services": make_services(settings, pool, queue, make_processors(settings, reg))}
    await queue.aclose()
    await pool.close()


async def events(db: asyncpg.Pool) -> list[asyncpg.Record]:
    return await db.fetch(  # type: ignore[no-any-return]
        "select processor, event_id, status, reason, attempts from events order by id")


async def test_a_batch_of_notices_is_recorded_in_one_request_each_once(
        both: FakeService, db: asyncpg.Pool) -> None:
    for n in (1, 2, 3):
        await both.invoice(f"inv_{n}", 1_000)
        both.store.payment(f"FP{n}", f"inv_{n}", 1_000, "confirmed")
    notices = [notice(f"FEV{n}", "payments", "confirmed", payment=f"FP{n}") for n in (1, 2, 3)]
    assert await both.post(*notices) == {"received": True, "duplicate": False}
    assert [(r["processor"], r["event_id"]) for r in await events(db)] == [
        ("fake", "FEV1"), ("fake", "FEV2"), ("fake", "FEV3")]
    # The same batch again, and one repeating a notice beside a new one.
    assert await both.post(*notices) == {"received": True, "duplicate": True}
    await both.invoice("inv_4", 1_000)
    both.store.payment("FP4", "inv_4", 1_000, "confirmed")
    assert (await both.post(notices[0], notice("FEV4", "payments", "confirmed",
                                               payment="FP4")))["duplicate"] is False
    assert len(await events(db)) == 4
    await both.settle()
    assert [r["status"] for r in await events(db)] == ["processed"] * 4
    for n in (1, 2, 3, 4):
        invoice = await both.get_invoice(f"inv_{n}")
        assert (invoice["status"], invoice["amount_paid"]) == ("paid", 1_000)
    assert sorted(both.store.fetched) == ["FEV1", "FEV2", "FEV3", "FEV4"]
    assert both.store.violations == []


@pytest.mark.parametrize("bad", [
    {"id": "FEV9", "resource_type": "payments"},
    {"id": "", "resource_type": "payments", "action": "confirmed"},
    "not an object",
    {"id": "FEV\x00", "resource_type": "payments", "action": "confirmed"},
], ids=["no-action", "empty-id", "not-an-object", "nul"])
async def test_a_batch_with_one_malformed_notice_records_nothing(
        both: FakeService, db: asyncpg.Pool, bad: Any) -> None:
    good = notice("FEV1", "payments", "confirmed", payment="FP1")
    answer = await both.post(good, bad, expect=400)
    assert answer["error"]["code"] == "event_invalid"
    assert await events(db) == []


async def test_a_bad_signature_is_refused_with_the_processors_own_status(
        both: FakeService, db: asyncpg.Pool) -> None:
    body = batch(notice("FEV1", "payments", "confirmed", payment="FP1"))
    refused = await both.client.post("/webhooks/fake", data=body,
                                     headers=sign(body, b"someone else"))
    assert refused.status == 498
    assert (await refused.json())["error"]["code"] == "signature_invalid"
    unsigned = await both.client.post("/webhooks/fake", data=body)
    assert unsigned.status == 498
    # Stripe's own route beside it keeps Stripe's 400.
    raw, headers = signed(session_completed("inv_1", 100, "pi_1"))
    stripe_refused = await both.client.post(
        "/webhooks/stripe", data=raw, headers={**headers, "Stripe-Signature": "t=1,v1=00"})
    assert stripe_refused.status == 400
    assert await events(db) == []


async def test_fetch_happens_outside_any_transaction_and_a_failing_fetch_retries(
        both: FakeService, job_ctx: WorkerContext, db: asyncpg.Pool) -> None:
    await both.invoice("inv_1", 1_000)
    both.store.payment("FP1", "inv_1", 1_000, "confirmed")
    both.store.fetch_failures.append(Unavailable("the fake is down"))
    await both.post(notice("FEV1", "payments", "confirmed", payment="FP1"))
    pk = await db.fetchval("select id from events where event_id = 'FEV1'")
    with pytest.raises(Retry):
        await process_event(job_ctx, pk)
    [row] = await events(db)
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert "the fake is down" in row["reason"]
    assert (await both.get_invoice("inv_1"))["amount_paid"] == 0
    assert await process_event(job_ctx, pk) == "processed"
    assert (await both.get_invoice("inv_1"))["amount_paid"] == 1_000
    assert both.store.fetched == ["FEV1", "FEV1"]
    assert both.store.violations == []
    # Done: a job run again fetches nothing more.
    assert await process_event(job_ctx, pk) == "processed"
    assert both.store.fetched == ["FEV1", "FEV1"]


async def test_a_fetch_the_processor_refuses_fails_the_event_with_its_reason(
        both: FakeService, job_ctx: WorkerContext, db: asyncpg.Pool) -> None:
    await both.post(notice("FEV1", "payments", "confirmed", payment="FP_unknown"))
    pk = await db.fetchval("select id from events where event_id = 'FEV1'")
    assert await process_event(job_ctx, pk) == "failed"
    [row] = await events(db)
    assert row["reason"] == "the fake has no resource for FEV1"


async def test_a_payment_processing_then_captured(both: FakeService) -> None:
    await both.invoice("inv_1", 1_000)
    both.store.payment("FP1", "inv_1", 1_000, "submitted")
    await both.post(notice("FEV1", "payments", "submitted", payment="FP1"))
    await both.settle()
    assert (await both.payment("FP1"))["status"] == "processing"
    assert (await both.get_invoice("inv_1"))["amount_paid"] == 0
    both.store.payments["FP1"]["status"] = "confirmed"
    await both.post(notice("FEV2", "payments", "confirmed", payment="FP1"))
    await both.settle()
    payment = await both.payment("FP1")
    assert (payment["status"], payment["source"]) == ("succeeded", "fake")
    assert (await both.get_invoice("inv_1"))["status"] == "paid"
    assert both.store.violations == []


async def test_a_payment_that_failed_applies_nothing(both: FakeService) -> None:
    await both.invoice("inv_1", 1_000)
    both.store.payment("FP1", "inv_1", 1_000, "submitted")
    await both.post(notice("FEV1", "payments", "submitted", payment="FP1"),
                    notice("FEV2", "payments", "failed", payment="FP1"))
    await both.settle()
    assert (await both.payment("FP1"))["status"] == "failed"
    invoice = await both.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("sent", 0)


async def test_a_chargeback_and_its_undoing_each_apply_once(both: FakeService) -> None:
    await both.invoice("inv_1", 1_000)
    both.store.payment("FP1", "inv_1", 1_000, "confirmed")
    await both.post(notice("FEV1", "payments", "confirmed", payment="FP1"))
    await both.settle()
    # Two notices of the same chargeback (the processor said it twice).
    await both.post(notice("FEV2", "payments", "charged_back", payment="FP1"),
                    notice("FEV3", "payments", "charged_back", payment="FP1"))
    await both.settle()
    assert (await both.payment("FP1"))["reversed"] == 1_000
    invoice = await both.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("sent", 0)
    await both.post(notice("FEV4", "payments", "chargeback_cancelled", payment="FP1"))
    await both.settle()
    invoice = await both.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 1_000)
    assert (await both.payment("FP1"))["reversed"] == 0


async def test_a_payment_through_the_fake_is_refunded_through_the_fake(
        both: FakeService, standin: Any, db: asyncpg.Pool) -> None:
    """Stripe is the default for new checkouts; the payment's own processor refunds it, and
    its refund failing gives the amount back once."""
    assert both.client.app[SERVICES].processor.name == "stripe"
    await both.invoice("inv_1", 1_000)
    both.store.payment("FP1", "inv_1", 1_000, "confirmed")
    await both.post(notice("FEV1", "payments", "confirmed", payment="FP1"))
    await both.settle()
    refund = await both.call("POST", "/v1/payments/FP1/refunds",
                             {"id": "rf_1", "amount": 400}, expect=202)
    assert refund["status"] == "pending"
    await both.settle()
    assert ("refund", "FP1") in both.store.calls
    assert standin.refunds == {}
    owed = await db.fetchrow("select payload, status from outbox where kind = 'refund'")
    assert (owed["payload"]["processor"], owed["status"]) == ("fake", "done")
    assert (await both.payment("FP1"))["refunded"] == 400
    [made] = both.store.refunds.values()
    # The fake accepts it (a notice of it), then says it failed, twice.
    await both.post(notice("FEV2", "refunds", "created", refund=made["id"]))
    await both.settle()
    assert (await both.payment("FP1"))["refunded"] == 400
    made["status"] = "failed"
    await both.post(notice("FEV3", "refunds", "failed", refund=made["id"]),
                    notice("FEV4", "refunds", "failed", refund=made["id"]))
    await both.settle()
    assert (await both.payment("FP1"))["refunded"] == 0
    assert (await both.call("GET", "/v1/refunds/rf_1"))["status"] == "failed"
    assert (await both.get_invoice("inv_1"))["amount_paid"] == 1_000
    assert both.store.violations == []


async def test_reconcile_asks_the_fake_about_its_own_session(
        both: FakeService, db: asyncpg.Pool) -> None:
    await both.invoice("inv_1", 1_000)
    # A session made through the fake whose webhooks were lost: it was paid there.
    both.store.payment("FP1", "inv_1", 1_000, "confirmed")
    both.store.sessions["FS1"] = {"id": "FS1", "status": "complete", "payment_id": "FP1",
                                  "amount": 1_000, "currency": "USD",
                                  "metadata": {"invoice_id": "inv_1"}}
    await db.execute(
        """insert into checkout_sessions (id, processor, invoice_id, amount, currency, url)
           values ('FS1', 'fake', 'inv_1', 1000, 'usd', 'https://fake-processor.test/pay/FS1')""")
    result = await reconcile(both, "inv_1")
    assert ("retrieve_checkout", "FS1") in both.store.calls
    assert result["errors"] == []
    payment = await both.payment("FP1")
    assert (payment["status"], payment["source"]) == ("succeeded", "fake")
    assert (await both.get_invoice("inv_1"))["status"] == "paid"


async def test_stripe_webhooks_still_work_beside_the_fake(
        both: FakeService, db: asyncpg.Pool) -> None:
    await both.invoice("inv_1", 1_000)
    await both.invoice("inv_2", 1_000)
    both.store.payment("FP2", "inv_2", 1_000, "confirmed")
    raw, headers = signed(session_completed("inv_1", 1_000, "pi_1"))
    response = await both.client.post("/webhooks/stripe", data=raw, headers=headers)
    assert response.status == 200
    await both.post(notice("FEV1", "payments", "confirmed", payment="FP2"))
    await both.settle()
    assert sorted((r["processor"], r["status"]) for r in await events(db)) == [
        ("fake", "processed"), ("stripe", "processed")]
    assert (await both.payment("pi_1"))["source"] == "stripe"
    assert (await both.payment("FP2", "inv_2"))["source"] == "fake"
    for invoice_id in ("inv_1", "inv_2"):
        assert (await both.get_invoice(invoice_id))["status"] == "paid"
    assert len(both.store.fetched) == 1
