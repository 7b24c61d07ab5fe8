"""CONTRACT §3 and §4 through signed webhooks and the API, against real PostgreSQL."""

from __future__ import annotations

import asyncio
import random

import pytest

from core.settings import Settings
from ledger.inbox import RETRY_LATER_ATTEMPTS
from tests.conftest import FAST_RETRIES, wait_for
from tests.service import Service
from sandbox.events import (
    charge_refunded,
    event,
    payment_intent_succeeded,
    session_completed,
    stripe_object,
)


async def test_partial_then_full_payment(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 3_000, "pi_1"))
    inv = await svc.get_invoice("inv_1")
    assert (inv["status"], inv["amount_paid"], inv["amount_remaining"]) == (
        "partially_paid", 3_000, 7_000)
    await svc.deliver(session_completed("inv_1", 7_000, "pi_2"))
    inv = await svc.get_invoice("inv_1")
    assert (inv["status"], inv["amount_paid"], inv["amount_remaining"]) == ("paid", 10_000, 0)
    assert [(p["id"], p["amount"], p["applied"], p["credited"], p["status"])
            for p in inv["payments"]] == [("pi_1", 3_000, 3_000, 0, "succeeded"),
                                          ("pi_2", 7_000, 7_000, 0, "succeeded")]
    assert await svc.balance() == {}


async def test_capture_larger_than_remaining_credits_the_excess(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 12_000, "pi_1"))
    inv = await svc.get_invoice("inv_1")
    assert (inv["status"], inv["amount_paid"]) == ("paid", 10_000)
    # CONTRACT §5 (updated): payments also show source, method (a card-only session's
    # card) and created_at.
    assert inv["payments"][0].pop("created_at")
    assert inv["payments"][0] | {} == {"id": "pi_1", "amount": 12_000, "applied": 10_000,
                                       "credited": 2_000, "refunded": 0, "reversed": 0,
                                       "status": "succeeded",
                                       "payment_request_id": None, "source": "stripe",
                                       "method": "card"}
    assert await svc.balance() == {"usd": 2_000}


async def test_capture_on_a_paid_invoice_is_all_excess(svc: Service) -> None:
    await svc.invoice("inv_1", 5_000)
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))
    await svc.deliver(session_completed("inv_1", 2_000, "pi_2"))
    inv = await svc.get_invoice("inv_1")
    assert inv["amount_paid"] == 5_000
    assert inv["payments"][1]["applied"] == 0 and inv["payments"][1]["credited"] == 2_000
    assert await svc.balance() == {"usd": 2_000}


@pytest.mark.parametrize("order", ["session_first", "intent_first"])
async def test_one_payment_intent_counts_once_in_any_order(svc: Service, order: str) -> None:
    await svc.invoice("inv_1", 10_000)
    events = [session_completed("inv_1", 3_000, "pi_1"),
              payment_intent_succeeded("inv_1", 3_000, "pi_1")]
    if order == "intent_first":
        events.reverse()
    await svc.deliver(*events)
    await svc.deliver(*events)  # and each delivered again
    inv = await svc.get_invoice("inv_1")
    assert inv["amount_paid"] == 3_000 and len(inv["payments"]) == 1
    for ev in events:
        assert (await svc.event_status(ev["id"]))["status"] == "processed"


async def test_refund_takes_credit_back_first_then_reopens_the_invoice(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 12_000, "pi_1"))
    await svc.deliver(charge_refunded("pi_1", 12_000, 1_500, invoice_id="inv_1"))
    assert await svc.balance() == {"usd": 500}
    assert (await svc.get_invoice("inv_1"))["status"] == "paid"
    await svc.deliver(charge_refunded("pi_1", 12_000, 4_000, invoice_id="inv_1"))
    inv = await svc.get_invoice("inv_1")
    assert await svc.balance() == {}
    assert (inv["status"], inv["amount_paid"], inv["amount_remaining"]) == (
        "partially_paid", 8_000, 2_000)
    assert inv["payments"][0]["refunded"] == 4_000


async def test_refunds_out_of_order_never_lower_the_total(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1"))
    later = charge_refunded("pi_1", 10_000, 3_000, invoice_id="inv_1")
    earlier = charge_refunded("pi_1", 10_000, 1_000, invoice_id="inv_1")
    await svc.deliver(later, earlier, later)
    inv = await svc.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["payments"][0]["refunded"]) == (7_000, 3_000)


async def test_refund_before_its_capture_is_applied_when_the_capture_lands(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(charge_refunded("pi_1", 10_000, 2_500, invoice_id="inv_1"))
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 0
    await svc.deliver(payment_intent_succeeded("inv_1", 10_000, "pi_1"))
    inv = await svc.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["status"]) == (7_500, "partially_paid")
    assert inv["payments"][0]["refunded"] == 2_500


async def test_refund_without_metadata_finds_its_known_payment(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1"))
    await svc.deliver(charge_refunded("pi_1", 10_000, 10_000, invoice_id=None))
    inv = await svc.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["status"]) == (0, "sent")


@pytest.mark.retry_base_seconds(FAST_RETRIES)
async def test_refund_for_an_unknown_payment_without_invoice_is_retried_then_failed(
        svc: Service) -> None:
    # CONTRACT §3 (updated): never silently ignored; retried like an unknown invoice.
    ev = charge_refunded("pi_elsewhere", 1_000, 1_000, invoice_id=None)
    await svc.deliver(ev)
    status = await svc.event_status(ev["id"])
    assert (status["status"], status["attempts"]) == ("failed", RETRY_LATER_ATTEMPTS)
    assert status["reason"] == "unknown payment pi_elsewhere"


async def test_credit_applied_on_send_and_on_demand(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 13_000, "pi_1"))
    assert await svc.balance() == {"usd": 3_000}
    inv = await svc.invoice("inv_2", 2_000)  # auto_apply_credit defaults to true
    assert (inv["status"], inv["amount_credited"], inv["amount_remaining"]) == ("paid", 2_000, 0)
    assert await svc.balance() == {"usd": 1_000}
    inv = await svc.invoice("inv_3", 5_000, auto_apply_credit=False)
    assert (inv["status"], inv["amount_credited"]) == ("sent", 0)
    inv = await svc.call("POST", "/v1/invoices/inv_3/apply-credit", {"amount": 400})
    assert (inv["amount_credited"], inv["amount_remaining"], inv["status"]) == (
        400, 4_600, "partially_paid")
    inv = await svc.call("POST", "/v1/invoices/inv_3/apply-credit")
    assert (inv["amount_credited"], inv["amount_remaining"]) == (1_000, 4_000)
    assert await svc.balance() == {}
    error = await svc.call("POST", "/v1/invoices/inv_3/apply-credit", {}, expect=422)
    assert error["error"]["code"] == "no_credit"


async def test_async_payment_processing_then_succeeded(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1", payment_status="unpaid"))
    inv = await svc.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["status"]) == (0, "sent")
    assert inv["payments"][0]["status"] == "processing"
    error = await svc.call("POST", "/v1/invoices/inv_1/void", expect=409)
    assert error["error"]["code"] == "invoice_has_payments"
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1",
                                        event_type="checkout.session.async_payment_succeeded"))
    inv = await svc.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["status"], inv["payments"][0]["status"]) == (
        10_000, "paid", "succeeded")


async def test_async_payment_failed_applies_nothing(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1", payment_status="unpaid"),
                      session_completed("inv_1", 10_000, "pi_1",
                                        event_type="checkout.session.async_payment_failed"))
    inv = await svc.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["payments"][0]["status"]) == (0, "failed")
    voided = await svc.call("POST", "/v1/invoices/inv_1/void")
    assert voided["status"] == "void"


async def test_currency_mismatch_fails_at_once_with_its_reason(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    ev = session_completed("inv_1", 10_000, "pi_1", currency="eur")
    await svc.deliver(ev)
    status = await svc.event_status(ev["id"])
    assert (status["status"], status["attempts"]) == ("failed", 1)
    assert "currency eur does not match" in status["reason"]
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 0


@pytest.mark.retry_base_seconds(0.3)
async def test_unknown_invoice_is_retried_then_applied_once_it_exists(svc: Service) -> None:
    ev = payment_intent_succeeded("inv_late", 4_000, "pi_1")
    await svc.deliver(ev, settle=False)
    worker = asyncio.create_task(svc.settle())

    async def tried_once() -> bool:  # and deferred: the invoice does not exist yet
        return bool((await svc.event_status(ev["id"]))["attempts"] >= 1)

    await wait_for(tried_once, timeout=30, interval=0.02)
    await svc.invoice("inv_late", 10_000)
    await worker
    status = await svc.event_status(ev["id"])
    assert status["status"] == "processed" and status["attempts"] >= 2
    assert (await svc.get_invoice("inv_late"))["amount_paid"] == 4_000


@pytest.mark.retry_base_seconds(FAST_RETRIES)
async def test_unknown_invoice_ends_failed(svc: Service) -> None:
    ev = payment_intent_succeeded("inv_never", 4_000, "pi_1")
    await svc.deliver(ev)
    status = await svc.event_status(ev["id"])
    assert (status["status"], status["attempts"]) == ("failed", RETRY_LATER_ATTEMPTS)
    assert status["reason"] == "unknown invoice inv_never"


async def test_unknown_invoice_gives_up_within_a_minute_by_default() -> None:
    from core.retry import backoff

    # The first RETRY_LATER_ATTEMPTS - 1 tries are deferred by arq's backoff; the last fails.
    base = Settings().retry_base_seconds
    assert sum(backoff(t, base=base) for t in range(1, RETRY_LATER_ATTEMPTS)) < 60


async def test_event_without_invoice_metadata_moves_no_money(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    ev = session_completed(None, 10_000, "pi_1")
    await svc.deliver(ev)
    assert (await svc.event_status(ev["id"]))["status"] == "ignored"
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 0


async def test_malformed_amount_fails_with_reason(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    session = stripe_object("checkout.session", amount_total="100", currency="usd",
                            payment_status="paid", metadata={"invoice_id": "inv_1"})
    ev = event("checkout.session.completed", session)
    await svc.deliver(ev)
    status = await svc.event_status(ev["id"])
    assert (status["status"], status["reason"]) == ("failed",
                                                    "amount_total is not a non-negative integer")


async def test_shuffled_duplicated_events_give_the_same_books(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.invoice("inv_2", 4_000)
    story = [
        session_completed("inv_1", 3_000, "pi_1"), payment_intent_succeeded("inv_1", 3_000, "pi_1"),
        session_completed("inv_1", 9_000, "pi_2"), payment_intent_succeeded("inv_1", 9_000, "pi_2"),
        session_completed("inv_2", 1_000, "pi_3", payment_status="unpaid"),
        session_completed("inv_2", 1_000, "pi_3",
                          event_type="checkout.session.async_payment_succeeded"),
        charge_refunded("pi_1", 3_000, 1_000, invoice_id="inv_1"),
        charge_refunded("pi_1", 3_000, 500, invoice_id="inv_1"),
    ]
    deliveries = story * 3
    random.Random(7).shuffle(deliveries)
    await svc.deliver(*deliveries)
    inv1, inv2 = await svc.get_invoice("inv_1"), await svc.get_invoice("inv_2")
    # Which of pi_1 and pi_2 overpaid depends on which landed first; either way every
    # cent captured and not refunded is on an invoice or on the customer's balance.
    assert [p["refunded"] for p in inv1["payments"] if p["id"] == "pi_1"] == [1_000]
    assert inv2["amount_paid"] == 1_000
    balance = (await svc.balance()).get("usd", 0)
    assert inv1["amount_paid"] + balance == 3_000 + 9_000 - 1_000
    assert inv1["amount_paid"] <= 10_000
