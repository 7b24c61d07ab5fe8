"""OVERPAYMENT_POLICY=refund: the excess goes back through the processor, once (§4)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

import jobs.events
from tests.conftest import replace
from tests.service import Service
from sandbox.events import charge_refunded, session_completed
from sandbox.stripe import StripeStandIn
from worker.app import create_app
from core.settings import Settings


REFUND_ROW = "select {} from outbox where kind = 'refund'"


@pytest.fixture
async def refunding(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool,
                    standin: StripeStandIn, monkeypatch: pytest.MonkeyPatch) -> Service:
    monkeypatch.setattr(jobs.events, "backoff", lambda job_try: 0.01)
    monkeypatch.setattr("jobs.outbox.backoff", lambda job_try: 0.01)
    policy = replace(settings, overpayment_policy="refund", stripe_api_key=standin.api_key,
                     stripe_api_base=standin.base)
    service = Service(await aiohttp_client(create_app(policy)), policy, db)
    await service.customer()
    return service


async def test_excess_is_refunded_not_credited(refunding: Service, standin: StripeStandIn) -> None:
    await refunding.invoice("inv_1", 10_000)
    await refunding.deliver(session_completed("inv_1", 12_000, "pi_1"))
    [call] = standin.calls_to("/v1/refunds")
    assert call.params["payment_intent"] == "pi_1" and call.params["amount"] == "2000"
    assert call.idempotency_key == "refund-excess:pi_1"
    inv = await refunding.get_invoice("inv_1")
    assert (inv["status"], inv["amount_paid"], inv["payments"][0]["credited"]) == ("paid", 10_000, 0)
    assert await refunding.balance() == {}
    outbox = await refunding.db.fetchrow(REFUND_ROW.format("status, result"))
    assert outbox["status"] == "done" and outbox["result"]["refund_id"].startswith("re_")

    # Stripe then reports the refund settle made: it takes nothing back from the books.
    await refunding.deliver(charge_refunded("pi_1", 12_000, 2_000, invoice_id="inv_1"))
    inv = await refunding.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["payments"][0]["refunded"]) == (10_000, 2_000)
    # A later merchant refund beyond it does.
    await refunding.deliver(charge_refunded("pi_1", 12_000, 3_000, invoice_id="inv_1"))
    assert (await refunding.get_invoice("inv_1"))["amount_paid"] == 9_000


async def test_refund_is_retried_on_transient_errors(refunding: Service,
                                                     standin: StripeStandIn) -> None:
    standin.failures = [500, 429]
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"))
    calls = standin.calls_to("/v1/refunds")
    assert len(calls) == 3 and {c.idempotency_key for c in calls} == {"refund-excess:pi_1"}
    outbox = await refunding.db.fetchrow(REFUND_ROW.format("status, attempts"))
    assert (outbox["status"], outbox["attempts"]) == ("done", 3)


async def test_refused_refund_is_recorded_not_retried(refunding: Service,
                                                      standin: StripeStandIn) -> None:
    standin.failures = [400]
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"))
    assert len(standin.calls_to("/v1/refunds")) == 1
    outbox = await refunding.db.fetchrow(REFUND_ROW.format("status, reason"))
    assert outbox["status"] == "failed" and "InvalidRequestError" in outbox["reason"]


async def test_without_an_api_key_the_refund_is_recorded_as_failed(
        aiohttp_client: Any, settings: Settings, db: asyncpg.Pool) -> None:
    policy = replace(settings, overpayment_policy="refund")
    service = Service(await aiohttp_client(create_app(policy)), policy, db)
    await service.customer()
    await service.invoice("inv_1", 1_000)
    await service.deliver(session_completed("inv_1", 1_500, "pi_1"))
    outbox = await db.fetchrow(REFUND_ROW.format("status, reason"))
    assert (outbox["status"], outbox["reason"]) == ("failed",
                                                    "PermanentError: STRIPE_API_KEY is not set")
