"""GoCardless's webhooks (CONTRACT §3a): signatures, batches, and every row of its table,
through the real settle app and worker, with the GoCardless stand-in answering the
fetches through the real `gocardless-pro` client."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest

from processors.gocardless.events import read_batch
from sandbox.gocardless import batch, gocardless_event, signed
from tests.gocardless_service import GoCardlessService, gcstandin, gcsvc, with_gocardless

__all__ = ["gcstandin", "gcsvc"]  # fixtures


def confirmed_payment(gcsvc: GoCardlessService, amount: int = 10_000,
                      invoice_id: str = "inv_1") -> str:
    """A payment GoCardless has (settle's billing request made it), not yet submitted."""
    return str(gcsvc.gc.payment(invoice_id, amount)["id"])


# --- verification and batches --------------------------------------------------------------


async def test_a_signed_batch_is_recorded_and_each_wrong_signature_is_498(
        gcsvc: GoCardlessService) -> None:
    body = batch(gocardless_event("payments", "created", payment="PM1"))
    for headers in ({"Webhook-Signature": "0" * 64}, {}, {"Webhook-Signature": ""},
                    signed(body, "another secret"),
                    {"Webhook-Signature": signed(body)["Webhook-Signature"].upper()}):
        response = await gcsvc.client.post("/webhooks/gocardless", data=body, headers=headers)
        assert response.status == 498
        assert (await response.json())["error"]["code"] == "signature_invalid"
    assert await gcsvc.events() == []
    assert await gcsvc.post(json.loads(body)["events"][0]) == {"received": True,
                                                               "duplicate": False}
    assert [r["type"] for r in await gcsvc.events()] == ["payments.created"]


async def test_with_no_secret_configured_every_delivery_is_498(
        aiohttp_client: Any, settings: Any, db: asyncpg.Pool, gcstandin: Any) -> None:
    from worker.app import create_app

    unsigned = with_gocardless(settings, gcstandin, webhook_secrets=())
    client = await aiohttp_client(create_app(unsigned))
    body = batch(gocardless_event("payments", "created", payment="PM1"))
    response = await client.post("/webhooks/gocardless", data=body, headers=signed(body))
    assert response.status == 498
    assert await db.fetchval("select count(*) from events") == 0


async def test_250_events_are_recorded_in_one_delivery_and_251_are_refused(
        gcsvc: GoCardlessService) -> None:
    events = [gocardless_event("mandates", "created", mandate=f"MD{n}") for n in range(251)]
    assert (await gcsvc.post(*events[:250]))["duplicate"] is False
    assert len(await gcsvc.events()) == 250
    refused = await gcsvc.post(*events, expect=400)
    assert refused["error"]["code"] == "event_invalid"
    assert len(await gcsvc.events()) == 250


@pytest.mark.parametrize("bad", [
    {"id": "EV_BAD", "resource_type": "payments"},
    {"id": "EV_BAD", "resource_type": "payments", "action": 7},
    {"id": "", "resource_type": "payments", "action": "confirmed"},
    ["not", "an", "object"],
    {"id": "EV\x00", "resource_type": "payments", "action": "confirmed"},
], ids=["no-action", "action-not-a-string", "empty-id", "not-an-object", "nul"])
async def test_a_batch_with_one_malformed_event_records_nothing(
        gcsvc: GoCardlessService, bad: Any) -> None:
    good = gocardless_event("payments", "created", payment="PM1")
    answer = await gcsvc.post(good, bad, expect=400)
    assert answer["error"]["code"] == "event_invalid"
    assert await gcsvc.events() == []


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"events": {}}', b'{"events": []}',
                                  b"not json", b'{"events": [1]}'])
async def test_a_body_that_is_not_a_batch_is_400(gcsvc: GoCardlessService, body: bytes) -> None:
    response = await gcsvc.client.post("/webhooks/gocardless", data=body, headers=signed(body))
    assert response.status == 400
    assert await gcsvc.events() == []


async def test_duplicates_count_as_recorded_and_each_event_is_applied_once(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    payment_id = confirmed_payment(gcsvc)
    [confirmed] = gcsvc.gc.move(payment_id, "confirmed")
    await gcsvc.post(confirmed)
    # The same batch again, one repeating it beside a new event, and it twice in one.
    assert (await gcsvc.post(confirmed))["duplicate"] is True
    other = gocardless_event("mandates", "created", mandate="MD1")
    assert (await gcsvc.post(confirmed, other))["duplicate"] is False
    assert (await gcsvc.post(confirmed, confirmed))["duplicate"] is True
    await gcsvc.settle()
    assert [(r["type"], r["status"]) for r in await gcsvc.events()] == [
        ("payments.confirmed", "processed"), ("mandates.created", "ignored")]
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10_000)
    # Fetched once: the duplicates were never applied.
    assert len(gcsvc.gc.calls_to("GET", f"/payments/{payment_id}")) == 1


def test_the_type_recorded_is_resource_type_dot_action_and_the_invoice_its_metadata() -> None:
    [event] = read_batch(batch(gocardless_event("payments", "confirmed", payment="PM1",
                                                metadata={"invoice_id": "inv_9"})))
    assert (event.event_id.startswith("EV"), event.type, event.invoice_id) == (
        True, "payments.confirmed", "inv_9")
    [bare] = read_batch(batch({"id": "EV1", "resource_type": "refunds", "action": "paid"}))
    assert (bare.type, bare.invoice_id) == ("refunds.paid", None)


# --- every row of §3a -----------------------------------------------------------------------


async def test_submitted_records_the_payment_processing_with_nothing_applied(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    payment_id = confirmed_payment(gcsvc)
    await gcsvc.move(payment_id, "submitted")
    payment = await gcsvc.payment_view(payment_id)
    assert (payment["status"], payment["source"], payment["method"]) == (
        "processing", "gocardless", "direct_debit")
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("sent", 0)


async def test_confirmed_captures_the_fetched_amount(gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    payment_id = confirmed_payment(gcsvc, amount=4_000)
    await gcsvc.move(payment_id, "submitted", "confirmed")
    payment = await gcsvc.payment_view(payment_id)
    assert (payment["status"], payment["amount"], payment["applied"], payment["source"],
            payment["method"]) == ("succeeded", 4_000, 4_000, "gocardless", "direct_debit")
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("partially_paid", 4_000)
    assert await gcsvc.mails("payment_received") == 1


@pytest.mark.parametrize("action", ["failed", "cancelled", "customer_approval_denied"])
async def test_a_payment_that_fails_before_confirmation_applies_nothing(
        gcsvc: GoCardlessService, action: str) -> None:
    await gcsvc.gbp_invoice()
    payment_id = confirmed_payment(gcsvc)
    await gcsvc.move(payment_id, "submitted", action)
    assert (await gcsvc.payment_view(payment_id))["status"] == "failed"
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("sent", 0)
    # The customer was told it was on its way, and is told it will not come.
    assert await gcsvc.mails("payment_failed") == 1


async def test_a_failure_after_confirmation_is_a_reversal_and_its_settlement_reverses_once(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice(notify_emails=["books@example.com"])
    payment_id = confirmed_payment(gcsvc)
    await gcsvc.move(payment_id, "submitted", "confirmed")
    assert (await gcsvc.get_invoice("inv_1"))["status"] == "paid"
    await gcsvc.move(payment_id, "late_failure")
    payment = await gcsvc.payment_view(payment_id)
    assert (payment["status"], payment["reversed"]) == ("succeeded", 10_000)
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("sent", 0)
    await gcsvc.move(payment_id, "late_failure_settled")
    assert (await gcsvc.payment_view(payment_id))["reversed"] == 10_000
    assert (await gcsvc.get_invoice("inv_1"))["amount_paid"] == 0
    assert await gcsvc.mails("payment_reversed") == 1
    assert await gcsvc.mails("payment_failed") == 0
    assert [r["status"] for r in await gcsvc.events()] == ["processed"] * 4


async def test_late_failure_settled_alone_reverses_the_payment(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    payment_id = confirmed_payment(gcsvc)
    await gcsvc.move(payment_id, "confirmed", "late_failure_settled")
    payment = await gcsvc.payment_view(payment_id)
    assert (payment["reversed"], (await gcsvc.get_invoice("inv_1"))["amount_paid"]) == (
        10_000, 0)


async def test_a_chargeback_is_reversed_once_and_its_cancellation_undoes_it_once(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice(notify_emails=["books@example.com"])
    payment_id = confirmed_payment(gcsvc)
    await gcsvc.move(payment_id, "submitted", "confirmed", "paid_out")
    [charged_back] = gcsvc.gc.move(payment_id, "charged_back")
    await gcsvc.deliver(charged_back)
    await gcsvc.deliver(charged_back)  # delivered again
    assert (await gcsvc.payment_view(payment_id))["reversed"] == 10_000
    assert (await gcsvc.get_invoice("inv_1"))["status"] == "sent"
    [cancelled] = gcsvc.gc.move(payment_id, "chargeback_cancelled")
    await gcsvc.deliver(cancelled)
    await gcsvc.deliver(cancelled)
    assert (await gcsvc.payment_view(payment_id))["reversed"] == 0
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10_000)
    assert await gcsvc.mails("payment_reversed") == 1
    assert [r["type"] for r in await gcsvc.events() if r["status"] == "ignored"] == [
        "payments.paid_out"]


async def refunded_payment(gcsvc: GoCardlessService, amount: int = 3_000) -> tuple[str, str]:
    """A captured payment and a merchant's refund of part of it, made through POST /refunds
    and accepted (pending): (the payment's id, GoCardless's refund id)."""
    await gcsvc.gbp_invoice()
    payment_id = confirmed_payment(gcsvc)
    await gcsvc.move(payment_id, "submitted", "confirmed")
    answer = await gcsvc.call("POST", f"/v1/payments/{payment_id}/refunds",
                              {"id": "rf_1", "amount": amount}, expect=202)
    assert answer["status"] == "pending"
    await gcsvc.settle()
    [made] = gcsvc.gc.refunds.values()
    return payment_id, str(made["id"])


@pytest.mark.parametrize("status", ["created", "pending_submission", "submitted"])
async def test_a_refund_accepted_is_pending(gcsvc: GoCardlessService, status: str) -> None:
    payment_id, refund_id = await refunded_payment(gcsvc)
    await gcsvc.deliver(*gcsvc.gc.move_refund_to(refund_id, status))
    assert (await gcsvc.call("GET", "/v1/refunds/rf_1"))["status"] == "pending"
    assert (await gcsvc.payment_view(payment_id))["refunded"] == 3_000
    assert (await gcsvc.get_invoice("inv_1"))["amount_paid"] == 7_000
    assert await gcsvc.mails("refund_issued") == 0


async def test_a_refund_paid_succeeds_and_mails_once(gcsvc: GoCardlessService) -> None:
    payment_id, refund_id = await refunded_payment(gcsvc)
    [paid] = gcsvc.gc.move_refund_to(refund_id, "paid")
    await gcsvc.deliver(paid)
    await gcsvc.deliver(paid)
    assert (await gcsvc.call("GET", "/v1/refunds/rf_1"))["status"] == "succeeded"
    assert (await gcsvc.get_invoice("inv_1"))["amount_paid"] == 7_000
    assert await gcsvc.mails("refund_issued") == 1


@pytest.mark.parametrize("status", ["failed", "cancelled", "bounced", "funds_returned"])
async def test_a_refund_that_did_not_happen_is_given_back_once(
        gcsvc: GoCardlessService, status: str) -> None:
    payment_id, refund_id = await refunded_payment(gcsvc)
    [undone] = gcsvc.gc.move_refund_to(refund_id, status)
    await gcsvc.deliver(undone)
    await gcsvc.deliver(undone, gocardless_event("refunds", status, refund=refund_id))
    assert (await gcsvc.call("GET", "/v1/refunds/rf_1"))["status"] == "failed"
    assert (await gcsvc.payment_view(payment_id))["refunded"] == 0
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10_000)
    assert await gcsvc.mails("refund_issued") == 0


async def test_a_fulfilled_billing_request_finishes_its_checkout_and_its_payment_is_on_its_way(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    events = gcsvc.gc.fulfil(session_id)
    await gcsvc.deliver(*events)
    session = await gcsvc.db.fetchrow(
        "select status, payment_id, processor from checkout_sessions where id = $1", session_id)
    payment_id = gcsvc.gc.billing_requests[session_id]["links"]["payment_request_payment"]
    assert (session["status"], session["payment_id"], session["processor"]) == (
        "complete", payment_id, "gocardless")
    assert (await gcsvc.payment_view(payment_id))["status"] == "processing"
    assert [(r["type"], r["status"]) for r in await gcsvc.events()] == [
        ("billing_requests.fulfilled", "processed"), ("mandates.created", "ignored"),
        ("payments.created", "ignored")]


@pytest.mark.parametrize("resource_type,action,link", [
    ("mandates", "cancelled", "mandate"), ("mandates", "failed", "mandate"),
    ("mandates", "expired", "mandate"), ("payments", "paid_out", "payment"),
    ("subscriptions", "created", "subscription"), ("billing_requests", "created",
                                                   "billing_request")])
async def test_other_events_are_recorded_and_ignored_without_a_fetch(
        gcsvc: GoCardlessService, resource_type: str, action: str, link: str) -> None:
    await gcsvc.deliver(gocardless_event(resource_type, action, **{link: "XX1"}))
    [row] = await gcsvc.events()
    assert (row["type"], row["status"]) == (f"{resource_type}.{action}", "ignored")
    assert gcsvc.gc.calls == []


async def test_a_payment_settle_did_not_make_is_ignored(gcsvc: GoCardlessService) -> None:
    payment = gcsvc.gc.payment("inv_1", 1_000)
    payment["metadata"] = {}
    await gcsvc.move(str(payment["id"]), "confirmed")
    [row] = await gcsvc.events()
    assert row["status"] == "ignored"
    assert "names no invoice" in row["reason"]


async def test_an_event_for_a_resource_gocardless_does_not_know_fails_with_its_reason(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.deliver(gocardless_event("payments", "confirmed", payment="PM_UNKNOWN"))
    [row] = await gcsvc.events()
    assert row["status"] == "failed"
    assert row["reason"] == "GoCardless: No such payment"
