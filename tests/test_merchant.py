"""The merchant's side of the money (CONTRACT §4, §5): manual payments, refunds, credit
notes, credit adjustments and the credit ledger, invoice lists, no processor no request."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any

import pytest

from sandbox.events import charge_refunded, session_completed
from sandbox.stripe import StripeStandIn
from tests.conftest import ROOT, SETTLE, process_env
from tests.mailserver import MailServer
from tests.service import Service


async def pay_link(svc: Service, standin: StripeStandIn, url: str) -> dict[str, Any]:
    opened = await svc.open_link(url)
    assert opened.status == 303, await opened.text()
    return standin.session_for_url(opened.headers["Location"])


# --- the stories of the product documents -----------------------------------------------

async def test_a_cheque_for_part_then_pay_now_for_the_rest(
        paying: Service, standin: StripeStandIn, mail: MailServer) -> None:
    invoice = await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 2_000)
    cheque = await paying.call("POST", "/v1/invoices/inv_1/payments",
                               {"id": "chq_1", "amount": 4_000, "method": "check",
                                "reference": "cheque 000123"}, expect=201)
    assert (cheque["id"], cheque["source"], cheque["method"], cheque["applied"]) == (
        "chq_1", "manual", "check", 4_000)
    assert cheque["created_at"]
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_remaining"]) == ("partially_paid", 6_000)
    session = await pay_link(paying, standin, invoice["pay_url"])
    assert session["amount_total"] == 6_000
    await paying.deliver(*standin.pay(session["id"]))
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10_000)
    assert invoice["payment_requests"][0]["status"] == "superseded"
    assert [p["source"] for p in invoice["payments"]] == ["manual", "stripe"]
    assert len(mail.of_kind("invoice_paid")) == 1
    assert "$40.00" in mail.of_kind("payment_received")[0].part("plain")
    assert (await paying.open_link(request["url"])).status == 410


async def test_a_request_larger_than_what_remains_when_opened_charges_only_what_remains(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 6_000)
    await paying.call("POST", "/v1/invoices/inv_1/payments",
                      {"id": "wire_1", "amount": 7_000, "method": "bank_transfer"}, expect=201)
    session = await pay_link(paying, standin, request["url"])
    assert session["amount_total"] == 3_000
    await paying.deliver(*standin.pay(session["id"]))
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_credited"]) == (
        "paid", 10_000, 0)


async def test_a_manual_payment_larger_than_what_remains_credits_the_excess(
        paying: Service, mail: MailServer) -> None:
    await paying.invoice("inv_1", 1_000)
    payment = await paying.call("POST", "/v1/invoices/inv_1/payments",
                                {"id": "cash_1", "amount": 1_500, "method": "cash"},
                                expect=201)
    assert (payment["applied"], payment["credited"]) == (1_000, 500)
    assert await paying.balance() == {"usd": 500}
    await paying.settle()
    [notice] = mail.of_kind("credit_issued")
    assert "$5.00" in notice.part("plain")


async def test_a_credit_note_after_a_partial_payment_takes_the_rest_off_and_credits_the_excess(
        paying: Service, mail: MailServer) -> None:
    await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 1_000)
    await paying.deliver(session_completed("inv_1", 6_000, "pi_1"))
    note = await paying.call("POST", "/v1/invoices/inv_1/credit-notes",
                             {"id": "cn_1", "amount": 5_000, "reason": "Damaged goods"},
                             expect=201)
    assert {k: note[k] for k in ("pre_payment_amount", "post_payment_amount", "credited_amount",
                                 "refunded_amount")} == {
        "pre_payment_amount": 4_000, "post_payment_amount": 1_000, "credited_amount": 1_000,
        "refunded_amount": 0}
    await paying.settle()
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_credit_noted"],
            invoice["amount_remaining"]) == ("paid", 6_000, 4_000, 0)
    assert invoice["credit_notes"] == [note]
    assert (await paying.call("GET", f"/v1/payment-requests/{request['id']}"))["status"] == \
        "superseded"
    assert await paying.balance() == {"usd": 1_000}
    [issued] = mail.of_kind("credit_note_issued")
    assert "$50.00" in issued.part("plain") and "Damaged goods" in issued.part("plain")
    assert len(mail.of_kind("invoice_paid")) == 1


async def test_a_merchant_refund_of_a_paid_invoice_reopens_it(
        paying: Service, standin: StripeStandIn, mail: MailServer) -> None:
    await paying.invoice("inv_1", 5_000, notify_emails=["books@example.com"])
    await paying.deliver(session_completed("inv_1", 5_000, "pi_1"))
    standin.intents["pi_1"] = {"id": "pi_1", "currency": "usd", "amount": 5_000,
                               "amount_received": 5_000, "metadata": {"invoice_id": "inv_1"}}
    refund = await paying.call("POST", "/v1/payments/pi_1/refunds",
                               {"id": "rf_1", "amount": 2_000, "reason": "Returned"},
                               expect=202)
    assert refund == {"id": "rf_1", "payment_id": "pi_1", "amount": 2_000, "status": "pending",
                      "reason": "Returned"}
    # Nothing moves until the processor confirms it.
    assert (await paying.get_invoice("inv_1"))["status"] == "paid"
    await paying.settle()
    [call] = standin.calls_to("/v1/refunds")
    assert call.idempotency_key == "rf_1" and call.params["amount"] == "2000"
    assert (await paying.call("GET", "/v1/refunds/rf_1"))["status"] == "succeeded"
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_remaining"]) == (
        "partially_paid", 3_000, 2_000)
    assert invoice["payments"][0]["refunded"] == 2_000
    [issued] = mail.of_kind("refund_issued")
    assert sorted(issued.envelope_to) == ["books@example.com", "pay@example.com"]
    # Stripe's webhook for the same refund changes nothing more.
    await paying.deliver(standin.refunded_charge("pi_1"))
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["payments"][0]["refunded"]) == (3_000, 2_000)
    assert len(mail.of_kind("refund_issued")) == 1


@pytest.mark.retry_base_seconds(0.3)
async def test_a_refund_confirmed_by_webhook_before_the_answer_moves_the_books_once(
        paying: Service, standin: StripeStandIn) -> None:
    from tests.test_refund_policy import run_jobs

    await paying.invoice("inv_1", 5_000)
    await paying.deliver(session_completed("inv_1", 5_000, "pi_1"))
    standin.intents["pi_1"] = {"id": "pi_1", "currency": "usd", "amount": 5_000,
                               "amount_received": 5_000, "metadata": {"invoice_id": "inv_1"}}
    await paying.call("POST", "/v1/payments/pi_1/refunds", {"id": "rf_1", "amount": 1_000},
                      expect=202)
    standin.lose_next_refund_answer = True
    # Stripe made the refund but its answer was lost: the webhook lands first.
    assert await run_jobs(paying, "refund") == ["retry"]
    await paying.deliver(standin.refunded_charge("pi_1"), settle=False)
    assert await run_jobs(paying, "event") == ["processed"]
    assert (await paying.get_invoice("inv_1"))["amount_paid"] == 4_000
    # Then the retry gets the processor's answer (the same refund, by its key).
    await paying.db.execute("update outbox set next_attempt_at = now(), lease_until = null")
    assert await run_jobs(paying, "refund") == ["done"]
    assert (await paying.get_invoice("inv_1"))["amount_paid"] == 4_000
    assert (await paying.call("GET", "/v1/refunds/rf_1"))["status"] == "succeeded"
    assert len(standin.refunds) == 1


async def test_a_manual_payment_is_refunded_at_once(paying: Service) -> None:
    await paying.invoice("inv_1", 3_000)
    await paying.call("POST", "/v1/invoices/inv_1/payments",
                      {"id": "bt_1", "amount": 3_000, "method": "bank_transfer"}, expect=201)
    refund = await paying.call("POST", "/v1/payments/bt_1/refunds",
                               {"id": "rf_1", "amount": 1_000}, expect=202)
    assert refund["status"] == "succeeded"
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("partially_paid", 2_000)
    over = await paying.call("POST", "/v1/payments/bt_1/refunds",
                             {"id": "rf_2", "amount": 2_001}, expect=422)
    assert over["error"]["code"] == "amount_exceeds_refundable"


async def test_a_credit_note_refund_goes_to_the_newest_payments_and_keeps_the_invoice_paid(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 10_000)
    await paying.deliver(session_completed("inv_1", 6_000, "pi_1"))
    await paying.deliver(session_completed("inv_1", 4_000, "pi_2"))
    note = await paying.call("POST", "/v1/invoices/inv_1/credit-notes",
                             {"id": "cn_1", "amount": 5_000, "refund": True}, expect=201)
    assert (note["pre_payment_amount"], note["post_payment_amount"]) == (0, 5_000)
    await paying.settle()
    refunded = {c.params["payment_intent"]: int(c.params["amount"])
                for c in standin.calls_to("/v1/refunds")}
    assert refunded == {"pi_2": 4_000, "pi_1": 1_000}
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_credit_noted"]) == (
        "paid", 10_000, 0)
    assert invoice["credit_notes"][0]["refunded_amount"] == 5_000
    assert {p["id"]: p["refunded"] for p in invoice["payments"]} == {"pi_1": 1_000,
                                                                     "pi_2": 4_000}
    assert await paying.balance() == {}


async def test_a_credit_note_refund_reported_before_its_answer_never_reopens_the_invoice(
        paying: Service, standin: StripeStandIn, mail: MailServer) -> None:
    """Stripe makes the credit note's refund, its answer is lost, and a charge.refunded
    listing no refund lands first: the refund belongs to the credit note, so the paid
    invoice is never reopened nor paid again (§4, issue 13)."""
    from tests.test_refund_policy import run_jobs

    await paying.invoice("inv_1", 5_000)
    await paying.deliver(session_completed("inv_1", 5_000, "pi_1"))
    await paying.call("POST", "/v1/invoices/inv_1/credit-notes",
                      {"id": "cn_1", "amount": 5_000, "refund": True}, expect=201)
    standin.lose_next_refund_answer = True
    assert await run_jobs(paying, "refund") == ["retry"]
    await paying.deliver(charge_refunded("pi_1", 5_000, 5_000, invoice_id="inv_1"),
                         settle=False)
    assert await run_jobs(paying, "event") == ["processed"]
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 5_000)
    # Then the answer, from the retry under the same key.
    await paying.db.execute("update outbox set next_attempt_at = now(), lease_until = null")
    assert await run_jobs(paying, "refund") == ["done"]
    await paying.settle()
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_remaining"]) == (
        "paid", 5_000, 0)
    assert invoice["credit_notes"][0]["refunded_amount"] == 5_000
    assert invoice["payments"][0]["refunded"] == 5_000
    assert await paying.db.fetchval("select times_paid from invoices") == 1
    assert len(mail.of_kind("invoice_paid")) == 1
    assert len(mail.of_kind("refund_issued")) == 1
    assert len(standin.refunds) == 1


async def test_a_credit_note_refund_that_fails_is_credited(paying: Service,
                                                           standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 2_000)
    await paying.deliver(session_completed("inv_1", 2_000, "pi_1"))
    standin.failures = [402]
    await paying.call("POST", "/v1/invoices/inv_1/credit-notes",
                      {"id": "cn_1", "amount": 500, "refund": True}, expect=201)
    await paying.settle()
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["credit_notes"][0]["credited_amount"],
            invoice["credit_notes"][0]["refunded_amount"]) == (500, 0)
    assert await paying.balance() == {"usd": 500}
    assert invoice["amount_paid"] == 2_000


async def test_credit_notes_never_add_up_to_more_than_the_invoice(paying: Service) -> None:
    await paying.invoice("inv_1", 1_000)
    await paying.call("POST", "/v1/invoices/inv_1/credit-notes", {"id": "cn_1", "amount": 600},
                      expect=201)
    # 400 remain and nothing was paid: nothing can be given back.
    refused = await paying.call("POST", "/v1/invoices/inv_1/credit-notes",
                                {"id": "cn_2", "amount": 500}, expect=422)
    assert refused["error"]["code"] == "amount_exceeds_creditable"
    await paying.call("POST", "/v1/invoices/inv_1/credit-notes", {"id": "cn_3", "amount": 400},
                      expect=201)
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_credit_noted"]) == ("paid", 1_000)
    draft = await paying.invoice("inv_d", 1_000, send=False)
    refused = await paying.call("POST", f"/v1/invoices/{draft['id']}/credit-notes",
                                {"id": "cn_4", "amount": 10}, expect=422)
    assert refused["error"]["code"] == "invoice_not_open"


# --- credit you can audit ------------------------------------------------------------------

async def test_adjustments_and_the_credit_ledger(paying: Service) -> None:
    given = await paying.call("POST", "/v1/customers/cus_1/credit-adjustments",
                              {"id": "adj_1", "amount": 1_500, "currency": "usd",
                               "reason": "Goodwill"}, expect=201)
    assert (given["id"], given["kind"], given["amount"], given["balance_after"]) == (
        "adj_1", "adjustment", 1_500, 1_500)
    refused = await paying.call("POST", "/v1/customers/cus_1/credit-adjustments",
                                {"id": "adj_2", "amount": -2_000, "currency": "usd",
                                 "reason": "Too much"}, expect=409)
    assert refused["error"]["code"] == "insufficient_credit"
    await paying.call("POST", "/v1/customers/cus_1/credit-adjustments",
                      {"id": "adj_3", "amount": -500, "currency": "usd", "reason": "Fee"},
                      expect=201)
    await paying.invoice("inv_1", 300)  # applies 300 of credit on send
    await paying.call("POST", "/v1/customers/cus_1/credit-adjustments",
                      {"id": "adj_eur", "amount": 100, "currency": "eur", "reason": "x"},
                      expect=201)
    everything = (await paying.call("GET", "/v1/customers/cus_1/credit-entries"))["entries"]
    assert [(e["kind"], e["amount"], e["currency"]) for e in everything] == [
        ("adjustment", 100, "eur"), ("applied", -300, "usd"), ("adjustment", -500, "usd"),
        ("adjustment", 1_500, "usd")]
    usd = (await paying.call("GET", "/v1/customers/cus_1/credit-entries?currency=usd"))[
        "entries"]
    assert [e["balance_after"] for e in usd] == [700, 1_000, 1_500]
    assert usd[0]["invoice_id"] == "inv_1"
    assert await paying.balance() == {"eur": 100, "usd": 700}
    pages, page = [], await paying.call("GET", "/v1/customers/cus_1/credit-entries?limit=1")
    while True:
        pages += [e["id"] for e in page["entries"]]
        if page["next"] is None:
            break
        page = await paying.call(
            "GET", f"/v1/customers/cus_1/credit-entries?limit=1&next={page['next']}")
    assert pages == [e["id"] for e in everything]


# --- lists ---------------------------------------------------------------------------------

async def test_invoices_are_listed_newest_first_by_status_and_customer(paying: Service) -> None:
    await paying.customer("cus_2", "two@example.com")
    await paying.invoice("inv_a", 1_000)
    await paying.invoice("inv_b", 1_000, due_date="2020-01-01")
    await paying.invoice("inv_c", 1_000, customer_id="cus_2")
    await paying.invoice("inv_d", 1_000, send=False)
    await paying.call("POST", "/v1/invoices/inv_a/payments",
                      {"id": "m_1", "amount": 400, "method": "cash"}, expect=201)
    listed = await paying.call("GET", "/v1/invoices")
    assert [i["id"] for i in listed["invoices"]] == ["inv_d", "inv_c", "inv_b", "inv_a"]
    assert listed["invoices"][3]["payments"][0]["id"] == "m_1"
    for status, ids in [("overdue", ["inv_b"]), ("partially_paid", ["inv_a"]),
                        ("draft", ["inv_d"]), ("sent", ["inv_c"]), ("paid", [])]:
        got = await paying.call("GET", f"/v1/invoices?status={status}")
        assert [i["id"] for i in got["invoices"]] == ids, status
        assert all(i["status"] == status for i in got["invoices"])
    mine = await paying.call("GET", "/v1/invoices?customer_id=cus_2")
    assert [i["id"] for i in mine["invoices"]] == ["inv_c"]
    seen, page = [], await paying.call("GET", "/v1/invoices?limit=3")
    while True:
        seen += [i["id"] for i in page["invoices"]]
        if page["next"] is None:
            break
        page = await paying.call("GET", f"/v1/invoices?limit=3&next={page['next']}")
    assert seen == ["inv_d", "inv_c", "inv_b", "inv_a"]


async def test_a_page_of_invoices_is_one_query(paying: Service,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from core.tx import Books
    from ledger import invoices

    for n in range(5):
        await paying.invoice(f"inv_{n}", 1_000)
        await paying.request(f"inv_{n}", 100)
    statements: list[str] = []

    class Counting:
        def __init__(self, pool: Any) -> None:
            self.pool = pool

        async def fetch(self, sql: str, *args: Any) -> Any:
            statements.append(sql)
            return await self.pool.fetch(sql, *args)

    books = Books(Counting(paying.db), lambda ids: None, "http://settle.test")  # type: ignore
    page = await invoices.list_invoices(books.pool, status=None, customer_id=None, cursor=None,
                                        limit=100, urls=books)
    assert len(page["invoices"]) == 5 and len(statements) == 1
    assert all(len(i["payment_requests"]) == 1 for i in page["invoices"])


# --- no processor, no request ----------------------------------------------------------------

async def test_without_a_processor_no_request_is_made_or_mailed(svc: Service,
                                                                mail: MailServer) -> None:
    invoice = await svc.invoice("inv_1", 1_000)
    assert invoice["pay_url"] is None
    refused = await svc.request("inv_1", 500, expect=409)
    assert refused["error"]["code"] == "processor_not_configured"
    await svc.settle()
    assert [r.kind for r in mail.received] == ["invoice_sent"]  # the invoice, no request
    assert await svc.db.fetchval("select count(*) from payment_requests") == 0


# --- the same id again ---------------------------------------------------------------------

@pytest.mark.parametrize("path,body,changed", [
    ("/v1/invoices/inv_1/payments", {"id": "x_1", "amount": 100, "method": "cash"},
     {"amount": 200}),
    ("/v1/invoices/inv_1/credit-notes", {"id": "x_1", "amount": 100}, {"reason": "other"}),
    ("/v1/customers/cus_1/credit-adjustments",
     {"id": "x_1", "amount": 100, "currency": "usd", "reason": "r"}, {"amount": 50}),
    ("/v1/payments/m_0/refunds", {"id": "x_1", "amount": 100}, {"amount": 99}),
])
async def test_a_repeated_post_is_a_no_op_and_another_body_a_conflict(
        paying: Service, path: str, body: dict[str, Any], changed: dict[str, Any]) -> None:
    await paying.invoice("inv_1", 10_000)
    await paying.call("POST", "/v1/invoices/inv_1/payments",
                      {"id": "m_0", "amount": 1_000, "method": "cash"}, expect=201)
    first = await paying.client.post(path, json=body, headers={"Authorization":
                                                                "Bearer test-token"})
    assert first.status in (201, 202)
    again = await paying.client.post(path, json=body, headers={"Authorization":
                                                                "Bearer test-token"})
    # §5: the same body again answers 200 with the same object (a refund's too: it was
    # asked for once, with 202).
    assert again.status == 200
    assert await again.json() == await first.json()
    conflict = await paying.call("POST", path, {**body, **changed}, expect=409)
    assert conflict["error"]["code"] == "id_conflict"
    before = await paying.get_invoice("inv_1")
    await paying.client.post(path, json=body, headers={"Authorization": "Bearer test-token"})
    assert await paying.get_invoice("inv_1") == before


async def post(svc: Service, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    answer = await svc.client.post(path, json=body,
                                   headers={"Authorization": "Bearer test-token"})
    return answer.status, await answer.json()


@pytest.mark.parametrize("path,body,new", [
    ("/v1/invoices/inv_1/credit-notes", {"id": "x_1", "amount": 100}, 201),
    ("/v1/customers/cus_1/credit-adjustments",
     {"id": "x_1", "amount": 100, "currency": "usd", "reason": "r"}, 201),
    ("/v1/payments/m_0/refunds", {"id": "x_1", "amount": 100}, 202),
    ("/v1/payments/pi_0/refunds", {"id": "x_1", "amount": 100}, 202),
])
async def test_concurrent_repeats_of_one_post_make_one_object_and_answer_it_to_each(
        paying: Service, path: str, body: dict[str, Any], new: int) -> None:
    """The id is claimed in one statement: of calls racing with one id and body, one
    creates and the others answer 200 with the same object (§5, issue 13)."""
    await paying.invoice("inv_1", 10_000)
    await paying.call("POST", "/v1/invoices/inv_1/payments",
                      {"id": "m_0", "amount": 1_000, "method": "cash"}, expect=201)
    await paying.deliver(session_completed("inv_1", 1_000, "pi_0"))
    before = await paying.balance()
    answers = await asyncio.gather(*(post(paying, path, body) for _ in range(4)))
    assert sorted(status for status, _ in answers) == [200, 200, 200, new], answers
    assert all(answer == answers[0][1] for _, answer in answers)
    invoice = await paying.get_invoice("inv_1")
    if "credit-notes" in path:
        assert (len(invoice["credit_notes"]), invoice["amount_credit_noted"]) == (1, 100)
    elif "credit-adjustments" in path:
        assert await paying.balance() == {"usd": before.get("usd", 0) + 100}
    else:
        assert await paying.db.fetchval("select count(*) from refunds where id = 'x_1'") == 1


@pytest.mark.parametrize("kind", ["credit-notes", "refunds"])
async def test_one_id_posted_at_once_for_two_objects_is_one_conflict_never_a_500(
        paying: Service, kind: str) -> None:
    for n in (1, 2):
        await paying.invoice(f"inv_{n}", 10_000)
        await paying.call("POST", f"/v1/invoices/inv_{n}/payments",
                          {"id": f"m_{n}", "amount": 1_000, "method": "cash"}, expect=201)
    paths = [f"/v1/invoices/inv_{n}/credit-notes" if kind == "credit-notes"
             else f"/v1/payments/m_{n}/refunds" for n in (1, 2)]
    answers = await asyncio.gather(*(post(paying, path, {"id": "x_1", "amount": 100})
                                     for path in paths))
    assert sorted(status for status, _ in answers) == [201 if kind == "credit-notes" else 202,
                                                        409], answers
    [conflict] = [answer for status, answer in answers if status == 409]
    assert conflict["error"]["code"] == "id_conflict"


# --- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("path,body,status,code", [
    ("/v1/invoices/inv_1/payments", {"id": "p", "amount": 0, "method": "cash"}, 422,
     "amount_invalid"),
    ("/v1/invoices/inv_1/payments", {"id": "p", "amount": 10.5, "method": "cash"}, 422,
     "amount_invalid"),
    ("/v1/invoices/inv_1/payments", {"id": "p", "amount": 10, "method": "bitcoin"}, 422,
     "method_invalid"),
    ("/v1/invoices/inv_1/payments", {"id": "a b", "amount": 10, "method": "cash"}, 422,
     "id_invalid"),
    ("/v1/invoices/inv_1/payments", {"amount": 10, "method": "cash"}, 422, "id_invalid"),
    ("/v1/invoices/inv_1/payments", {"id": "p", "amount": 10, "method": "cash",
                                     "reference": "x\u2028y"}, 422, "input_invalid"),
    ("/v1/invoices/inv_1/payments", {"id": "p", "amount": 10, "method": "cash",
                                     "received_at": "yesterday"}, 422, "received_at_invalid"),
    ("/v1/invoices/nope/payments", {"id": "p", "amount": 10, "method": "cash"}, 404,
     "not_found"),
    ("/v1/invoices/draft/payments", {"id": "p", "amount": 10, "method": "cash"}, 422,
     "invoice_not_open"),
    ("/v1/payments/nope/refunds", {"id": "r", "amount": 10}, 404, "not_found"),
    ("/v1/payments/m_0/refunds", {"id": "r", "amount": -1}, 422, "amount_invalid"),
    ("/v1/payments/m_0/refunds", {"id": "r", "amount": 1_001}, 422,
     "amount_exceeds_refundable"),
    ("/v1/payments/m_0/refunds", {"id": "r", "amount": 10, "reason": "\x00"}, 422,
     "input_invalid"),
    ("/v1/invoices/inv_1/credit-notes", {"id": "c", "amount": 20_000}, 422,
     "amount_exceeds_creditable"),
    ("/v1/invoices/inv_1/credit-notes", {"id": "c", "amount": 10, "refund": "yes"}, 422,
     "refund_invalid"),
    ("/v1/invoices/nope/credit-notes", {"id": "c", "amount": 10}, 404, "not_found"),
    ("/v1/customers/cus_1/credit-adjustments", {"id": "a", "amount": 0, "currency": "usd",
                                                "reason": "r"}, 422, "amount_invalid"),
    ("/v1/customers/cus_1/credit-adjustments", {"id": "a", "amount": 5, "currency": "USD",
                                                "reason": "r"}, 422, "currency_invalid"),
    ("/v1/customers/cus_1/credit-adjustments", {"id": "a", "amount": 5, "currency": "usd"},
     422, "input_invalid"),
    ("/v1/customers/nope/credit-adjustments", {"id": "a", "amount": 5, "currency": "usd",
                                               "reason": "r"}, 404, "not_found"),
])
async def test_new_routes_refuse_bad_input_with_the_contract_codes(
        paying: Service, path: str, body: dict[str, Any], status: int, code: str) -> None:
    await paying.invoice("inv_1", 10_000)
    await paying.invoice("draft", 1_000, send=False)
    await paying.call("POST", "/v1/invoices/inv_1/payments",
                      {"id": "m_0", "amount": 1_000, "method": "cash"}, expect=201)
    error = await paying.call("POST", path, body, expect=status)
    assert error["error"]["code"] == code


@pytest.mark.parametrize("query,code", [
    ("status=lost", "status_invalid"), ("customer_id=a%20b", "id_invalid"),
    ("limit=0", "limit_invalid"), ("next=nonsense", "cursor_invalid"),
])
async def test_the_invoice_list_refuses_bad_queries(paying: Service, query: str,
                                                    code: str) -> None:
    error = await paying.call("GET", f"/v1/invoices?{query}", expect=422)
    assert error["error"]["code"] == code
    missing = await paying.call("GET", "/v1/refunds/nope", expect=404)
    assert missing["error"]["code"] == "not_found"
    missing = await paying.call("GET", "/v1/customers/nope/credit-entries", expect=404)
    assert missing["error"]["code"] == "not_found"


async def test_the_status_in_sql_agrees_with_the_rules(paying: Service) -> None:
    from ledger.status import STATUS_SQL, status_of

    await paying.invoice("a", 1_000)
    await paying.invoice("b", 1_000, due_date="2020-01-01")
    await paying.invoice("c", 1_000, send=False)
    await paying.invoice("d", 1_000)
    await paying.call("POST", "/v1/invoices/d/void")
    await paying.invoice("e", 1_000)
    await paying.call("POST", "/v1/invoices/e/payments", {"id": "m", "amount": 1_000,
                                                          "method": "cash"}, expect=201)
    await paying.invoice("f", 1_000)
    await paying.call("POST", "/v1/invoices/f/credit-notes", {"id": "cn", "amount": 300},
                      expect=201)
    rows = await paying.db.fetch(f"select i.*, {STATUS_SQL} as sql_status from invoices i")
    assert {r["id"]: r["sql_status"] for r in rows} == {r["id"]: status_of(r) for r in rows}
    assert len({r["sql_status"] for r in rows}) == 5


async def test_the_invoice_timeline_shows_the_new_movements(paying: Service) -> None:
    await paying.invoice("inv_1", 10_000)
    await paying.call("POST", "/v1/invoices/inv_1/payments",
                      {"id": "chq_9", "amount": 4_000, "method": "check"}, expect=201)
    await paying.call("POST", "/v1/payments/chq_9/refunds", {"id": "rf_9", "amount": 500},
                      expect=202)
    await paying.call("POST", "/v1/invoices/inv_1/credit-notes", {"id": "cn_9", "amount": 1_000},
                      expect=201)
    story = subprocess.run([SETTLE, "invoice", "inv_1"], env=process_env(paying.settings),
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert story.returncode == 0, story.stderr
    for part in ("manual chq_9 (check) succeeded", "merchant rf_9 of chq_9 for 500: succeeded",
                 "cn_9 for 1000: 1000 off what is owed", "credit-noted 1000"):
        assert part in story.stdout, story.stdout
