"""Money moves once (CONTRACT §4): voiding never gives credit back a second time, a refund
is mailed only once it has succeeded, and a payment refunded in full no longer blocks void.

Each case is one the money review reproduced against running processes (issue 21).
"""

from __future__ import annotations

from typing import Any

from sandbox.events import refund_event, session_completed
from sandbox.stripe import StripeStandIn
from tests.mailserver import MailServer
from tests.service import Service


async def entries(svc: Service) -> list[tuple[str, int]]:
    listed = await svc.call("GET", "/v1/customers/cus_1/credit-entries")
    return [(e["kind"], e["amount"]) for e in reversed(listed["entries"])]


# --- void after a credit note: the credit returns once --------------------------------


async def test_voiding_an_invoice_paid_by_credit_after_a_credit_note_returns_the_credit_once(
        svc: Service) -> None:
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_000, "currency": "usd", "reason": "prepaid"},
                   expect=201)
    invoice = await svc.invoice("inv_1", 1_000)  # auto_apply_credit: paid by the credit
    assert (invoice["status"], invoice["amount_credited"]) == ("paid", 1_000)
    note = await svc.call("POST", "/v1/invoices/inv_1/credit-notes",
                          {"id": "cn_1", "amount": 1_000}, expect=201)
    assert (note["pre_payment_amount"], note["post_payment_amount"]) == (0, 1_000)
    assert await svc.balance() == {"usd": 1_000}
    voided = await svc.call("POST", "/v1/invoices/inv_1/void")
    assert voided["status"] == "void"
    # 1000 given, 1000 spent, 1000 given back by the credit note: 1000, never 2000.
    assert await svc.balance() == {"usd": 1_000}
    assert await entries(svc) == [("adjustment", 1_000), ("applied", -1_000),
                                  ("credit_note", 1_000)]
    # Reconcile finds the books as they are: nothing to repair.
    job = await svc.call("POST", "/v1/ops/reconcile", {"invoice_id": "inv_1"}, expect=202)
    await svc.settle()
    result = (await svc.call("GET", f"/v1/ops/jobs/{job['job_id']}"))["result"]
    assert result["repaired"] == []


async def test_voiding_after_a_credit_note_gives_back_only_the_credit_it_did_not_return(
        svc: Service) -> None:
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 400, "currency": "usd", "reason": "goodwill"},
                   expect=201)
    invoice = await svc.invoice("inv_1", 1_000)
    assert (invoice["amount_credited"], invoice["amount_remaining"]) == (400, 600)
    note = await svc.call("POST", "/v1/invoices/inv_1/credit-notes",
                          {"id": "cn_1", "amount": 1_000}, expect=201)
    assert (note["pre_payment_amount"], note["post_payment_amount"]) == (600, 400)
    assert await svc.balance() == {"usd": 400}
    await svc.call("POST", "/v1/invoices/inv_1/void")
    # A gift of 400 stays 400: the credit note already gave the applied 400 back.
    assert await svc.balance() == {"usd": 400}


async def test_voiding_gives_back_the_credit_a_smaller_credit_note_did_not_return(
        svc: Service) -> None:
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_000, "currency": "usd", "reason": "prepaid"},
                   expect=201)
    await svc.invoice("inv_1", 1_000)
    await svc.call("POST", "/v1/invoices/inv_1/credit-notes", {"id": "cn_1", "amount": 300},
                   expect=201)
    assert await svc.balance() == {"usd": 300}
    voided = await svc.call("POST", "/v1/invoices/inv_1/void")
    # 700 of the applied credit was never returned: void returns it, and only it.
    assert await svc.balance() == {"usd": 1_000}
    assert voided["amount_credited"] == 300  # the part its credit note returned


# --- what blocks void --------------------------------------------------------------------


async def test_a_payment_refunded_in_full_no_longer_blocks_void(svc: Service) -> None:
    await svc.invoice("inv_1", 1_000)
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "cash_1", "amount": 300, "method": "cash"}, expect=201)
    await svc.call("POST", "/v1/payments/cash_1/refunds", {"id": "rf_1", "amount": 200},
                   expect=202)
    blocked = await svc.call("POST", "/v1/invoices/inv_1/void", expect=409)
    assert blocked["error"]["code"] == "invoice_has_payments"  # 100 still applied
    await svc.call("POST", "/v1/payments/cash_1/refunds", {"id": "rf_2", "amount": 100},
                   expect=202)
    voided = await svc.call("POST", "/v1/invoices/inv_1/void")
    assert voided["status"] == "void"


async def test_a_processing_payment_blocks_void(svc: Service) -> None:
    await svc.invoice("inv_1", 1_000)
    await svc.deliver(session_completed("inv_1", 1_000, "pi_1", payment_status="unpaid"))
    blocked = await svc.call("POST", "/v1/invoices/inv_1/void", expect=409)
    assert blocked["error"]["code"] == "invoice_has_payments"


async def test_a_payment_whose_excess_went_back_still_blocks_void(svc: Service) -> None:
    await svc.invoice("inv_1", 600)
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "cash_1", "amount": 1_000, "method": "cash"}, expect=201)
    # The refund takes back the 400 of credit first: the 600 stays applied.
    await svc.call("POST", "/v1/payments/cash_1/refunds", {"id": "rf_1", "amount": 400},
                   expect=202)
    blocked = await svc.call("POST", "/v1/invoices/inv_1/void", expect=409)
    assert blocked["error"]["code"] == "invoice_has_payments"


# --- refund_issued only once a refund has succeeded --------------------------------------


def refund_of(standin: StripeStandIn, payment_intent: str) -> dict[str, Any]:
    [refund] = [r for r in standin.refunds.values() if r["payment_intent"] == payment_intent]
    return refund


async def paid_by_card(paying: Service, standin: StripeStandIn, total: int = 5_000) -> None:
    await paying.invoice("inv_1", total, notify_emails=["books@example.com"])
    await paying.deliver(session_completed("inv_1", total, "pi_1"))
    standin.intents["pi_1"] = {"id": "pi_1", "currency": "usd", "amount": total,
                               "amount_received": total, "metadata": {"invoice_id": "inv_1"}}


async def test_a_pending_merchant_refund_moves_the_books_and_mails_once_it_succeeds(
        paying: Service, standin: StripeStandIn, mail: MailServer) -> None:
    await paid_by_card(paying, standin)
    standin.refund_status = "pending"
    await paying.call("POST", "/v1/payments/pi_1/refunds", {"id": "rf_1", "amount": 2_000},
                      expect=202)
    await paying.settle()
    # Accepted: the books move (§4), but nobody is told of a refund that may yet fail.
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["status"]) == (3_000, "partially_paid")
    assert (await paying.call("GET", "/v1/refunds/rf_1"))["status"] == "pending"
    assert mail.of_kind("refund_issued") == []
    refund = refund_of(standin, "pi_1")
    refund["status"] = "succeeded"
    await paying.deliver(refund_event("refund.updated", refund))
    [issued] = mail.of_kind("refund_issued")
    assert sorted(issued.envelope_to) == ["books@example.com", "pay@example.com"]
    assert (await paying.call("GET", "/v1/refunds/rf_1"))["status"] == "succeeded"
    # The same news again (charge.refund.updated, a duplicate) mails nothing more.
    await paying.deliver(refund_event("charge.refund.updated", refund),
                         refund_event("refund.updated", refund))
    assert len(mail.of_kind("refund_issued")) == 1
    assert (await paying.get_invoice("inv_1"))["amount_paid"] == 3_000


async def test_a_pending_refund_that_fails_is_given_back_and_never_mailed(
        paying: Service, standin: StripeStandIn, mail: MailServer) -> None:
    await paid_by_card(paying, standin)
    standin.refund_status = "pending"
    await paying.call("POST", "/v1/payments/pi_1/refunds", {"id": "rf_1", "amount": 2_000},
                      expect=202)
    await paying.settle()
    assert (await paying.get_invoice("inv_1"))["amount_paid"] == 3_000
    await paying.deliver(standin.fail_refund(refund_of(standin, "pi_1")["id"]))
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["status"]) == (5_000, "paid")
    assert (await paying.call("GET", "/v1/refunds/rf_1"))["status"] == "failed"
    assert mail.of_kind("refund_issued") == []


async def test_a_pending_credit_note_refund_is_mailed_once_it_succeeds(
        paying: Service, standin: StripeStandIn, mail: MailServer) -> None:
    await paid_by_card(paying, standin)
    standin.refund_status = "pending"
    await paying.call("POST", "/v1/invoices/inv_1/credit-notes",
                      {"id": "cn_1", "amount": 1_000, "refund": True}, expect=201)
    await paying.settle()
    assert mail.of_kind("refund_issued") == []
    refund = refund_of(standin, "pi_1")
    refund["status"] = "succeeded"
    await paying.deliver(refund_event("charge.refund.updated", refund))
    assert len(mail.of_kind("refund_issued")) == 1


async def test_a_pending_overpayment_refund_is_mailed_once_it_succeeds(
        paying: Service, standin: StripeStandIn, mail: MailServer) -> None:
    from tests.conftest import replace

    refunding = Service(paying.client, replace(paying.settings, overpayment_policy="refund"),
                        paying.db)
    await refunding.invoice("inv_1", 3_000)
    standin.refund_status = "pending"
    await refunding.deliver(session_completed("inv_1", 5_000, "pi_1"))
    [call] = standin.calls_to("/v1/refunds")
    assert call.params["amount"] == "2000"
    assert mail.of_kind("refund_issued") == []
    refund = refund_of(standin, "pi_1")
    refund["status"] = "succeeded"
    await refunding.deliver(refund_event("refund.updated", refund))
    assert len(mail.of_kind("refund_issued")) == 1
    assert await refunding.balance() == {}
