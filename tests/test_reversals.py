"""Chargebacks (reversals) through Stripe's disputes (CONTRACT §3, §4): the bank takes the
disputed amount back by the refund rule, and gives it back when the dispute is won; each
once, in any order, under duplicates."""

from __future__ import annotations

import itertools

import pytest

from processors.stripe.events import interpret
from ledger.facts import Ignored, Reversed
from sandbox.events import dispute_event, session_completed
from tests.mailserver import MailServer
from tests.service import Service

WITHDRAWN = "charge.dispute.funds_withdrawn"
REINSTATED = "charge.dispute.funds_reinstated"


def test_a_dispute_is_a_reversal_of_its_payment_intent() -> None:
    event = dispute_event(WITHDRAWN, "pi_1", 1_500, dispute_id="dp_1")
    assert interpret(WITHDRAWN, event) == [
        Reversed("pi_1", None, "usd", "dp_1", 1_500, source="stripe")]
    back = dispute_event(REINSTATED, "pi_1", 1_500, dispute_id="dp_1", status="won")
    assert interpret(REINSTATED, back) == [
        Reversed("pi_1", None, "usd", "dp_1", 1_500, given_back=True, source="stripe")]
    assert interpret(WITHDRAWN, dispute_event(WITHDRAWN, "pi_1", 0)) == [
        Ignored("dispute of no amount")]


async def test_a_chargeback_reopens_the_paid_invoice_and_tells_the_merchant(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 5_000, notify_emails=["books@example.com"])
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))
    assert (await svc.get_invoice("inv_1"))["status"] == "paid"
    await svc.deliver(dispute_event(WITHDRAWN, "pi_1", 5_000, dispute_id="dp_1"))
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_remaining"]) == (
        "sent", 0, 5_000)
    [payment] = invoice["payments"]
    assert (payment["reversed"], payment["status"], payment["refunded"]) == (
        5_000, "succeeded", 0)
    [told] = mail.of_kind("payment_reversed")
    assert told.envelope_to == ["books@example.com"]
    assert "$50.00" in told.part("plain")
    # Nothing more can be refunded of what the bank took.
    over = await svc.call("POST", "/v1/payments/pi_1/refunds", {"id": "rf_1", "amount": 1},
                          expect=None)
    assert over["error"]["code"] in ("amount_exceeds_refundable", "processor_not_configured")


async def test_a_won_dispute_applies_the_money_again_and_the_invoice_is_paid_again(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 5_000)
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))
    await svc.deliver(dispute_event(WITHDRAWN, "pi_1", 2_000, dispute_id="dp_1"))
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("partially_paid", 3_000)
    await svc.deliver(dispute_event(REINSTATED, "pi_1", 2_000, dispute_id="dp_1",
                                    status="won"))
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["payments"][0]["reversed"]) \
        == ("paid", 5_000, 0)
    # Paid twice, told twice: once per time it became paid.
    assert len(mail.of_kind("invoice_paid")) == 2


async def test_a_reversal_takes_the_payments_credit_first(svc: Service) -> None:
    await svc.invoice("inv_1", 3_000)
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))  # 2000 credited
    assert await svc.balance() == {"usd": 2_000}
    await svc.deliver(dispute_event(WITHDRAWN, "pi_1", 2_500, dispute_id="dp_1"))
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["status"]) == (2_500, "partially_paid")
    assert await svc.balance() == {}
    # Given back, last taken first: 500 to the invoice, 2000 to the credit again.
    await svc.deliver(dispute_event(REINSTATED, "pi_1", 2_500, dispute_id="dp_1"))
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["status"]) == (3_000, "paid")
    assert await svc.balance() == {"usd": 2_000}


async def test_a_reversal_of_credit_already_spent_is_unrecovered_and_moves_no_more(
        svc: Service) -> None:
    await svc.invoice("inv_1", 3_000)
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))  # 2000 credited
    await svc.invoice("inv_2", 2_000)  # sent with auto_apply_credit: the 2000 is spent
    assert await svc.balance() == {}
    await svc.deliver(dispute_event(WITHDRAWN, "pi_1", 5_000, dispute_id="dp_1"))
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["payments"][0]["reversed"]) == (0, 5_000)
    assert (await svc.get_invoice("inv_2"))["status"] == "paid"
    assert await svc.balance() == {}
    unrecovered = await svc.db.fetchval("select unrecovered from reversals where id = 'dp_1'")
    assert unrecovered == 2_000


ORDERS = list(itertools.permutations(["withdrawn", "reinstated", "withdrawn again"]))


@pytest.mark.parametrize("order", ORDERS, ids=["-".join(o) for o in ORDERS])
async def test_a_dispute_in_any_order_and_under_duplicates_moves_the_money_once(
        svc: Service, mail: MailServer, order: tuple[str, ...]) -> None:
    await svc.invoice("inv_1", 5_000, notify_emails=["books@example.com"])
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))
    withdrawn = dispute_event(WITHDRAWN, "pi_1", 5_000, dispute_id="dp_1")
    events = {"withdrawn": withdrawn,
              "withdrawn again": dispute_event(WITHDRAWN, "pi_1", 5_000, dispute_id="dp_1"),
              "reinstated": dispute_event(REINSTATED, "pi_1", 5_000, dispute_id="dp_1",
                                          status="won")}
    for name in order:
        await svc.deliver(events[name])
    invoice = await svc.get_invoice("inv_1")
    # Taken and given back, in whatever order: the invoice is as if nothing happened.
    assert (invoice["status"], invoice["amount_paid"], invoice["payments"][0]["reversed"]) \
        == ("paid", 5_000, 0)
    assert await svc.balance() == {}
    reversed_first = order.index("reinstated") > 0
    assert len(mail.of_kind("payment_reversed")) == (1 if reversed_first else 0)
    assert len(mail.of_kind("invoice_paid")) == (2 if reversed_first else 1)


async def test_a_dispute_before_its_capture_waits_for_it(svc: Service) -> None:
    await svc.invoice("inv_1", 5_000)
    await svc.deliver(dispute_event(WITHDRAWN, "pi_1", 5_000, dispute_id="dp_1"),
                      settle=False)
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"), settle=False)
    # Whichever the worker takes first, the dispute is retried until its payment is there.
    await svc.settle()
    assert await svc.db.fetchval("select status from events where type = $1",
                                 WITHDRAWN) == "processed"
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["payments"][0]["reversed"]) == (0, 5_000)


async def test_an_invoice_whose_only_payment_was_charged_back_can_be_voided(
        svc: Service) -> None:
    await svc.invoice("inv_1", 5_000)
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))
    await svc.deliver(dispute_event(WITHDRAWN, "pi_1", 5_000, dispute_id="dp_1"))
    assert (await svc.call("POST", "/v1/invoices/inv_1/void"))["status"] == "void"
    # Won later: the money comes back to the customer's credit, not to a void invoice.
    await svc.deliver(dispute_event(REINSTATED, "pi_1", 5_000, dispute_id="dp_1"))
    assert (await svc.get_invoice("inv_1"))["status"] == "void"
    assert await svc.balance() == {"usd": 5_000}
