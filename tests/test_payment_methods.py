"""How a payment was made (CONTRACT §5, §6): Stripe's payment method types in settle's
words, read from what each event carries, and kept on the payment across its events."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.facts import Captured, PaymentFailed, Processing
from processors.stripe.events import interpret
from sandbox.events import event, payment_intent_succeeded, session_completed, stripe_object
from tests.service import Service


def _method(event_type: str, payload: dict[str, Any]) -> str | None:
    [fact] = [f for f in interpret(event_type, payload)
              if isinstance(f, Captured | Processing | PaymentFailed)]
    return fact.payment.method


@pytest.mark.parametrize("types,method", [
    (["card"], "card"), (["customer_balance"], "bank_transfer"),
    (["sepa_debit"], "direct_debit"), (["bacs_debit"], "direct_debit"),
    (["us_bank_account"], "direct_debit"), (["au_becs_debit"], "direct_debit"),
    (["acss_debit"], "direct_debit"), (["card", "customer_balance"], None),
    (["klarna"], None), ([], None),
])
def test_a_paid_session_says_the_one_type_it_offered(types: list[str], method: str | None) -> None:
    payload = session_completed("inv_1", 1_000, "pi_1", method_types=types)
    assert _method("checkout.session.completed", payload) == method


@pytest.mark.parametrize("types,method", [
    (["card", "customer_balance"], "bank_transfer"), (["card", "sepa_debit"], "direct_debit"),
    # A list that names no way of paying later: Checkout's bank transfer.
    (["card"], "bank_transfer"),
    (["card", "sepa_debit", "customer_balance"], None),
])
def test_a_session_completed_unpaid_was_paid_by_its_asynchronous_type(
        types: list[str], method: str | None) -> None:
    for event_type in ("checkout.session.completed", "checkout.session.async_payment_succeeded",
                       "checkout.session.async_payment_failed"):
        payload = session_completed("inv_1", 1_000, "pi_1", payment_status="unpaid",
                                    method_types=types, event_type=event_type)
        assert _method(event_type, payload) == method, event_type


def test_a_payment_intent_says_its_one_type_or_its_charges() -> None:
    assert _method("payment_intent.succeeded",
                   payment_intent_succeeded("inv_1", 1_000, "pi_1")) == "card"
    charge = stripe_object("charge", payment_method_details={"type": "sepa_debit"})
    intent = stripe_object("payment_intent", id="pi_1", amount_received=1_000, currency="eur",
                           metadata={"invoice_id": "inv_1"}, latest_charge=charge,
                           payment_method_types=["card", "sepa_debit"])
    assert _method("payment_intent.succeeded",
                   event("payment_intent.succeeded", intent)) == "direct_debit"
    intent["latest_charge"] = "ch_1"  # not expanded: the two types say nothing
    assert _method("payment_intent.succeeded",
                   event("payment_intent.succeeded", intent)) is None


async def test_a_capture_that_does_not_say_keeps_the_method_of_the_processing_row(
        svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1", payment_status="unpaid",
                                        method_types=["card", "customer_balance"]))
    # The success event of a session offering several ways of paying later says none.
    await svc.deliver(session_completed(
        "inv_1", 10_000, "pi_1", event_type="checkout.session.async_payment_succeeded",
        method_types=["card", "sepa_debit", "customer_balance"]))
    [payment] = (await svc.get_invoice("inv_1"))["payments"]
    assert (payment["status"], payment["method"]) == ("succeeded", "bank_transfer")


async def test_a_later_event_says_how_a_payment_already_applied_was_made(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1",
                                        method_types=["card", "customer_balance"]))
    assert (await svc.get_invoice("inv_1"))["payments"][0]["method"] is None
    await svc.deliver(payment_intent_succeeded("inv_1", 10_000, "pi_1"))
    [payment] = (await svc.get_invoice("inv_1"))["payments"]
    assert (payment["amount"], payment["applied"], payment["method"]) == (10_000, 10_000, "card")


async def test_a_manual_payment_keeps_the_method_the_merchant_gave(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "chq_1", "amount": 4_000, "method": "check"}, expect=201)
    await svc.deliver(payment_intent_succeeded("inv_1", 6_000, "pi_1"))
    methods = {p["id"]: p["method"] for p in (await svc.get_invoice("inv_1"))["payments"]}
    assert methods == {"chq_1": "check", "pi_1": "card"}
