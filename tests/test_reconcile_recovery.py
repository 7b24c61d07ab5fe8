"""Reconcile applies every payment the processor has that settle did not record,
whatever settle thought of its session and whatever the invoice's status now (§8)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from arq import Retry

from core.queue import queue_client
from core.retry import backoff
from jobs.reconcile import run_ops_job
from sandbox.stripe import StripeStandIn
from tests.conftest import worker_ctx
from tests.service import Service
from tests.test_operations import reconcile


async def session_of(svc: Service, standin: StripeStandIn, url: str) -> dict[str, Any]:
    response = await svc.open_link(url)
    assert response.status == 303, await response.text()
    return standin.session_for_url(response.headers["Location"])


async def test_a_request_paid_before_pay_now_whose_webhooks_were_lost_is_recovered(
        paying: Service, standin: StripeStandIn) -> None:
    """10,000 invoice: the customer pays a 4,000 request (its webhooks lost), then 10,000
    through Pay Now (delivered). Stripe captured 14,000: 4,000 is credit."""
    invoice = await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 4_000)
    lost = standin.pay((await session_of(paying, standin, request["url"]))["id"])
    assert lost  # never delivered
    pay_now = await session_of(paying, standin, invoice["pay_url"])
    await paying.deliver(*standin.pay(pay_now["id"]))
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10_000)
    # The expiry owed for the superseded request found its session complete: the money
    # it took is applied at once, as excess on a paid invoice.
    assert await paying.balance() == {"usd": 4_000}
    result = await reconcile(paying, "inv_1")
    assert result["recovered"] == [] and result["repaired"] == []
    assert await paying.balance() == {"usd": 4_000}


async def test_reconcile_asks_about_sessions_settle_thought_finished(
        paying: Service, standin: StripeStandIn) -> None:
    """The same story where the expiry only marked the session complete (as it did
    before): reconcile asks about it anyway, on a paid invoice."""
    invoice = await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 4_000)
    session = await session_of(paying, standin, request["url"])
    standin.pay(session["id"])  # its webhooks are lost
    await paying.db.execute(
        "update checkout_sessions set status = 'complete' where id = $1", session["id"])
    pay_now = await session_of(paying, standin, invoice["pay_url"])
    events = standin.pay(pay_now["id"])
    await paying.db.execute("delete from outbox where kind = 'expire_checkout'")
    await paying.deliver(*events)
    await paying.db.execute("delete from outbox where kind = 'expire_checkout'")
    assert await paying.balance() == {}
    result = await reconcile(paying, "inv_1")
    assert result["sessions_checked"] >= 1
    [recovered] = result["recovered"]
    assert (recovered["session_id"], recovered["payment_id"]) == (session["id"],
                                                                  session["payment_intent"])
    assert await paying.balance() == {"usd": 4_000}
    assert (await paying.get_invoice("inv_1"))["amount_paid"] == 10_000
    # Settled now: a second reconcile does not ask again.
    again = await reconcile(paying, "inv_1")
    assert again["recovered"] == []


async def test_a_cancelled_link_paid_at_the_processor_is_recovered(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 3_000)
    session = await session_of(paying, standin, request["url"])
    standin.pay(session["id"])  # paid just before the cancel; webhooks lost
    await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    await paying.settle()
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["status"]) == (3_000, "partially_paid")
    assert invoice["payment_requests"][0]["status"] == "cancelled"


async def test_a_payment_left_processing_is_asked_about_and_applied(
        paying: Service, standin: StripeStandIn) -> None:
    """checkout.session.completed came unpaid (a bank transfer); the success events
    were lost. The payment stays processing (blocking void) until reconcile asks."""
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 2_000)
    session = await session_of(paying, standin, request["url"])
    await paying.deliver(*standin.pay(session["id"], payment_status="unpaid"))
    standin.transfer(session["id"], succeeded=True)  # its events are lost
    refused = await paying.call("POST", "/v1/invoices/inv_1/void", expect=409)
    assert refused["error"]["code"] == "invoice_has_payments"
    result = await reconcile(paying, "inv_1")
    assert any(r["payment_id"] == session["payment_intent"] for r in result["recovered"])
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["payments"][0]["status"]) == (2_000, "succeeded")


async def test_a_processing_payment_that_failed_is_failed_and_void_allowed(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 2_000)
    session = await session_of(paying, standin, request["url"])
    await paying.deliver(*standin.pay(session["id"], payment_status="unpaid"))
    standin.transfer(session["id"], succeeded=False)  # lost as well
    result = await reconcile(paying, "inv_1")
    assert result["payments_checked"] == 1
    invoice = await paying.get_invoice("inv_1")
    assert invoice["payments"][0]["status"] == "failed"
    assert (await paying.call("POST", "/v1/invoices/inv_1/void"))["status"] == "void"


async def test_the_scheduled_reconcile_finds_paid_invoices_with_unsettled_sessions(
        paying: Service, standin: StripeStandIn) -> None:
    invoice = await paying.invoice("inv_1", 1_000)
    request = await paying.request("inv_1", 400)
    session = await session_of(paying, standin, request["url"])
    standin.pay(session["id"])
    await paying.db.execute(
        "update checkout_sessions set status = 'expired' where id = $1", session["id"])
    pay_now = await session_of(paying, standin, invoice["pay_url"])
    events = standin.pay(pay_now["id"])
    await paying.db.execute("delete from outbox where kind = 'expire_checkout'")
    await paying.deliver(*events)
    await paying.db.execute("delete from outbox where kind = 'expire_checkout'")
    result = await reconcile(paying)  # every invoice that may hold unrecorded money
    assert [r["session_id"] for r in result["recovered"]] == [session["id"]]
    assert await paying.balance() == {"usd": 400}


async def test_a_slice_whose_processor_calls_outrun_the_job_is_an_attempt_with_backoff(
        paying: Service, standin: StripeStandIn) -> None:
    """Four sessions of one invoice (links opened, then replaced by a new one), two paid
    (their webhooks lost), and a Stripe that takes 1.5 s a call: six seconds of
    questions for a job that may run five. The slice stops before arq would cancel it,
    counts as an attempt with backoff, keeps what it found, and the next one finishes."""
    await paying.invoice("inv_1", 10_000)
    sessions = []
    for _ in range(4):
        request = await paying.request("inv_1", 1_000)
        sessions.append(await session_of(paying, standin, request["url"]))
        await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    paid = {s["id"] for s in sessions[1::2]}
    for session_id in paid:
        standin.pay(session_id)  # never delivered
    accepted = await paying.call("POST", "/v1/ops/reconcile", {"invoice_id": "inv_1"},
                                 expect=202)
    standin.delay = 1.5
    queue = queue_client(paying.settings.redis_url, paying.settings.queue_name)
    ctx = worker_ctx(paying.settings, paying.db, queue)
    try:
        started = time.monotonic()
        with pytest.raises(Retry) as cut:
            await run_ops_job(ctx, accepted["job_id"])
        took = time.monotonic() - started
        assert took < paying.settings.job_timeout_seconds
        base = paying.settings.retry_base_seconds
        assert cut.value.defer_score == round(backoff(ctx["job_try"], base=base) * 1000)
        job = await paying.call("GET", f"/v1/ops/jobs/{accepted['job_id']}")
        assert job["status"] == "in_progress"

        standin.delay = 0
        ctx["job_try"] += 1
        assert await run_ops_job(ctx, accepted["job_id"]) == "complete"
    finally:
        await ctx["services"].processor.close()
        await queue.aclose()
    result = (await paying.call("GET", f"/v1/ops/jobs/{accepted['job_id']}"))["result"]
    assert result["checked"] == 1
    assert sorted(r["session_id"] for r in result["recovered"]) == sorted(paid)
    assert (await paying.get_invoice("inv_1"))["amount_paid"] == 2_000


async def test_a_session_first_learned_through_reconcile_is_recorded_with_how_it_was_paid(
        paying: Service, standin: StripeStandIn) -> None:
    """Stripe's session offers a card and a bank transfer; reconcile asks it with its
    PaymentIntent expanded, so a payment whose webhooks were lost is recorded as the card
    (or the bank transfer) it was, as its webhooks would have said."""
    await paying.invoice("inv_1", 5_000)
    card = await session_of(paying, standin, (await paying.request("inv_1", 2_000))["url"])
    standin.pay(card["id"])  # its webhooks are lost
    result = await reconcile(paying, "inv_1")
    assert [r["payment_id"] for r in result["recovered"]] == [card["payment_intent"]]
    transfer = await session_of(paying, standin,
                                (await paying.request("inv_1", 1_000))["url"])
    standin.pay(transfer["id"], payment_status="unpaid")  # lost too: a transfer on its way
    await reconcile(paying, "inv_1")
    methods = {p["id"]: (p["method"], p["status"])
               for p in (await paying.get_invoice("inv_1"))["payments"]}
    assert methods == {card["payment_intent"]: ("card", "succeeded"),
                       transfer["payment_intent"]: ("bank_transfer", "processing")}
    [asked] = [c for c in standin.calls_to(f"/v1/checkout/sessions/{card['id']}")]
    assert asked.params == {"expand[0]": "payment_intent.latest_charge"}
