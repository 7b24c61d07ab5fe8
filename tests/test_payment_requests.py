"""Payment requests and pay links (CONTRACT §5, §6), through HTTP and the Stripe stand-in."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.service import Service
from sandbox.stripe import StripeStandIn


async def session_of(svc: Service, standin: StripeStandIn, url: str) -> dict[str, Any]:
    response = await svc.open_link(url)
    assert response.status == 303, await response.text()
    return standin.session_for_url(response.headers["Location"])


async def test_the_partial_payment_story(paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    await svc.invoice("inv_1", 10_000)

    # A request for 3,000 is created, opened and paid.
    first = await svc.request("inv_1", 3_000, note="Deposit, please")
    assert (first["status"], first["amount"], first["currency"], first["reminders_sent"]) == (
        "active", 3_000, "usd", 0)
    assert first["url"].startswith("http://settle.test/pay/")
    session = await session_of(svc, standin, first["url"])
    assert (session["amount_total"], session["currency"], session["mode"]) == (3_000, "usd",
                                                                               "payment")
    assert session["metadata"] == {"invoice_id": "inv_1", "payment_request_id": first["id"]}
    assert session["_intent_metadata"] == session["metadata"]
    [create] = standin.calls_to("/v1/checkout/sessions")
    assert create.idempotency_key and create.params["line_items[0][quantity]"] == "1"
    # Opening it again reuses the open session.
    assert (await session_of(svc, standin, first["url"]))["id"] == session["id"]
    assert len(standin.calls_to("/v1/checkout/sessions")) == 1

    await svc.deliver(*standin.pay(session["id"]))
    invoice = await svc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["amount_remaining"]) == (
        "partially_paid", 3_000, 7_000)
    assert invoice["payments"][0]["payment_request_id"] == first["id"]
    assert (await svc.call("GET", f"/v1/payment-requests/{first['id']}"))["status"] == "paid"
    gone = await svc.open_link(first["url"])
    assert gone.status == 410 and "already been paid" in await gone.text()

    # A second request for 2,000; the customer opens it and completes it at Stripe, but
    # its webhooks are slow to come.
    second = await svc.request("inv_1", 2_000)
    late_session = await session_of(svc, standin, second["url"])
    late_events = standin.pay(late_session["id"])

    # Meanwhile the customer uses Pay Now for the 7,000 outstanding.
    pay_now = await session_of(svc, standin, invoice["pay_url"])
    assert pay_now["amount_total"] == 7_000 and pay_now["metadata"] == {"invoice_id": "inv_1"}
    await svc.deliver(*standin.pay(pay_now["id"]))

    invoice = await svc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"], invoice["pay_url"]) == ("paid", 10_000,
                                                                               None)
    statuses = {r["id"]: r["status"] for r in invoice["payment_requests"]}
    assert statuses == {first["id"]: "paid", second["id"]: "superseded"}
    # Its session was expired at Stripe (already complete there, so that counts as done).
    assert f"/v1/checkout/sessions/{late_session['id']}/expire" in [c.path for c in standin.calls]
    assert await svc.db.fetchval("select status from outbox where key = $1",
                                 f"expire:{late_session['id']}") == "done"
    gone = await svc.open_link(second["url"])
    assert gone.status == 410 and "paid in full" in await gone.text()

    # The 2,000 arrives anyway: money received, all excess, credited.
    await svc.deliver(*late_events)
    invoice = await svc.get_invoice("inv_1")
    assert invoice["amount_paid"] == 10_000
    late = [p for p in invoice["payments"] if p["payment_request_id"] == second["id"]]
    assert (late[0]["applied"], late[0]["credited"]) == (0, 2_000)
    assert await svc.balance() == {"usd": 2_000}


async def test_superseded_open_session_is_expired_at_stripe(paying: Service,
                                                            standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 1_000)
    session = await session_of(paying, standin, request["url"])
    invoice = await paying.get_invoice("inv_1")
    await paying.deliver(*standin.pay((await session_of(paying, standin, invoice["pay_url"]))["id"]))
    assert standin.sessions[session["id"]]["status"] == "expired"
    assert (await paying.call("GET", f"/v1/payment-requests/{request['id']}"))["status"] == \
        "superseded"


async def test_paid_by_credit_supersedes_the_active_request(paying: Service,
                                                             standin: StripeStandIn) -> None:
    from sandbox.events import session_completed

    await paying.invoice("inv_0", 1_000)
    await paying.deliver(session_completed("inv_0", 6_000, "pi_over"))
    await paying.invoice("inv_1", 5_000, auto_apply_credit=False)
    request = await paying.request("inv_1", 2_000)
    await session_of(paying, standin, request["url"])
    invoice = await paying.call("POST", "/v1/invoices/inv_1/apply-credit")
    assert invoice["status"] == "paid"
    assert invoice["payment_requests"][0]["status"] == "superseded"
    await paying.settle()
    assert [s["status"] for s in standin.sessions.values()] == ["expired"]


async def test_cancel_takes_effect_at_once_and_expires_the_session(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 1_000)
    session = await session_of(paying, standin, request["url"])
    cancelled = await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    assert cancelled["status"] == "cancelled"
    gone = await paying.open_link(request["url"])
    assert gone.status == 410 and "cancelled" in await gone.text()
    await paying.settle()
    assert standin.sessions[session["id"]]["status"] == "expired"
    # Cancelling again changes nothing; resending a cancelled request is refused.
    again = await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    assert again["status"] == "cancelled"
    refused = await paying.call("POST", f"/v1/payment-requests/{request['id']}/resend",
                                expect=409)
    assert refused["error"]["code"] == "request_not_active"
    # A payment through the cancelled link is money received all the same.
    # (a session completed at Stripe just before its expiry landed).
    await paying.deliver(_completed_for(session))
    invoice = await paying.get_invoice("inv_1")
    assert invoice["amount_paid"] == 1_000 and invoice["status"] == "partially_paid"
    assert (await paying.call("GET", f"/v1/payment-requests/{request['id']}"))["status"] == \
        "cancelled"


def _completed_for(session: dict[str, Any]) -> dict[str, Any]:
    from sandbox.events import session_completed

    return session_completed(session["metadata"]["invoice_id"], session["amount_total"],
                             session["payment_intent"],
                             request_id=session["metadata"]["payment_request_id"])


async def test_cancel_refused_for_paid_or_superseded(paying: Service,
                                                     standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 5_000)
    await paying.deliver(*standin.pay((await session_of(paying, standin, request["url"]))["id"]))
    refused = await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel",
                                expect=409)
    assert refused["error"]["code"] == "request_not_active"


async def test_resend_is_accepted_for_an_active_request(paying: Service) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 500)
    resent = await paying.call("POST", f"/v1/payment-requests/{request['id']}/resend",
                               expect=202)
    assert resent["url"] == request["url"]


async def test_one_active_request_per_invoice_and_replace(paying: Service,
                                                          standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    first = await paying.request("inv_1", 1_000)
    session = await session_of(paying, standin, first["url"])
    conflict = await paying.request("inv_1", 2_000, expect=409)
    assert conflict["error"]["code"] == "active_request_exists"
    second = await paying.request("inv_1", 2_000, replace=True)
    assert (await paying.call("GET", f"/v1/payment-requests/{first['id']}"))["status"] == \
        "cancelled"
    assert second["status"] == "active" and second["url"] != first["url"]
    await paying.settle()
    assert standin.sessions[session["id"]]["status"] == "expired"


async def test_concurrent_creation_one_wins_one_409(paying: Service) -> None:
    await paying.invoice("inv_1", 5_000)
    answers = await asyncio.gather(*(
        paying.client.post("/v1/invoices/inv_1/payment-requests",
                           json={"amount": 1_000 + i, "to": "a@example.com"},
                           headers={"Authorization": "Bearer test-token"})
        for i in range(2)))
    assert sorted(a.status for a in answers) == [201, 409]
    assert await paying.db.fetchval(
        "select count(*) from payment_requests where status = 'active'") == 1


async def test_the_database_keeps_one_active_request_even_without_the_code(
        paying: Service) -> None:
    import asyncpg

    await paying.invoice("inv_1", 5_000)
    await paying.request("inv_1", 1_000)
    with pytest.raises(asyncpg.UniqueViolationError):
        await paying.db.execute(
            """insert into payment_requests (id, invoice_id, amount, currency, token, recipients)
               values ('pr_x', 'inv_1', 5, 'usd', 'tok', '{}')""")


async def test_quote_deposit_is_requested_in_full(paying: Service) -> None:
    await paying.invoice("q_1", 4_000, kind="quote_deposit")
    refused = await paying.request("q_1", 1_000, expect=422)
    assert refused["error"]["code"] == "partial_not_allowed"
    accepted = await paying.request("q_1", 4_000)
    assert accepted["amount"] == 4_000


@pytest.mark.parametrize("body,code", [
    ({"amount": 0}, "amount_invalid"),
    ({"amount": -100}, "amount_invalid"),
    ({"amount": 10.5}, "amount_invalid"),
    ({"amount": "100"}, "amount_invalid"),
    ({"amount": None}, "amount_invalid"),
    ({"amount": 6_000}, "amount_exceeds_remaining"),
    ({"to": "not-an-email"}, "email_invalid"),
    ({"to": []}, "email_invalid"),
    ({"to": None}, "email_invalid"),
    ({"cc": ["ok@example.com", "bad"]}, "email_invalid"),
    ({"bcc": "x@example.com"}, "email_invalid"),
])
async def test_request_validation(paying: Service, body: dict[str, Any], code: str) -> None:
    await paying.invoice("inv_1", 5_000)
    error = await paying.call("POST", "/v1/invoices/inv_1/payment-requests",
                              {"amount": 1_000, "to": "a@example.com", **body}, expect=422)
    assert error["error"]["code"] == code


async def test_requests_only_for_open_invoices(paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("draft", 1_000, send=False)
    assert (await paying.request("draft", 500, expect=422))["error"]["code"] == "invoice_not_open"
    await paying.invoice("void", 1_000)
    await paying.call("POST", "/v1/invoices/void/void")
    assert (await paying.request("void", 500, expect=422))["error"]["code"] == "invoice_not_open"
    invoice = await paying.invoice("paid", 1_000)
    await paying.deliver(*standin.pay((await session_of(paying, standin, invoice["pay_url"]))["id"]))
    assert (await paying.request("paid", 500, expect=422))["error"]["code"] == "invoice_not_open"
    assert (await paying.request("nope", 500, expect=404))["error"]["code"] == "not_found"


async def test_request_shape_keeps_recipients(paying: Service) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 500, to=["a@example.com", "b@example.com"],
                                   cc=["c@example.com"], bcc=["d@example.com"], note="<b>hi</b>")
    assert (request["to"], request["cc"], request["bcc"], request["note"]) == (
        ["a@example.com", "b@example.com"], ["c@example.com"], ["d@example.com"], "<b>hi</b>")
    fetched = await paying.call("GET", f"/v1/payment-requests/{request['id']}")
    assert fetched == request
    assert (await paying.get_invoice("inv_1"))["payment_requests"] == [request]
    missing = await paying.call("GET", "/v1/payment-requests/pr_nope", expect=404)
    assert missing["error"]["code"] == "not_found"


async def test_link_tokens_are_unguessable(paying: Service) -> None:
    urls = set()
    for i in range(5):
        await paying.invoice(f"inv_{i}", 5_000)
        request = await paying.request(f"inv_{i}", 500)
        invoice = await paying.get_invoice(f"inv_{i}")
        for url in (request["url"], invoice["pay_url"]):
            token = url.rsplit("/", 1)[1]
            assert len(token) >= 32 and f"inv_{i}" not in token and request["id"] not in token
            urls.add(url)
    assert len(urls) == 10


async def test_pay_now_follows_the_outstanding_amount(paying: Service,
                                                      standin: StripeStandIn) -> None:
    from sandbox.events import session_completed

    invoice = await paying.invoice("inv_1", 5_000)
    first = await session_of(paying, standin, invoice["pay_url"])
    assert first["amount_total"] == 5_000
    await paying.deliver(session_completed("inv_1", 1_000, "pi_elsewhere"))
    second = await session_of(paying, standin, invoice["pay_url"])
    assert second["amount_total"] == 4_000 and second["id"] != first["id"]
    await paying.settle()
    assert standin.sessions[first["id"]]["status"] == "expired"


async def test_links_that_do_not_exist_or_are_not_payable(paying: Service) -> None:
    missing = await paying.client.get("/pay/not-a-token", allow_redirects=False)
    assert missing.status == 404
    invoice = await paying.invoice("inv_1", 1_000)
    await paying.call("POST", "/v1/invoices/inv_1/void")
    gone = await paying.open_link(invoice["pay_url"])
    assert gone.status == 410 and "withdrawn" in await gone.text()
    assert gone.content_type == "text/html"


async def test_stripe_down_is_a_503_page_not_a_crash(paying: Service,
                                                     standin: StripeStandIn) -> None:
    standin.failures = [500]
    invoice = await paying.invoice("inv_1", 1_000)
    response = await paying.open_link(invoice["pay_url"])
    assert response.status == 503 and "try again" in (await response.text()).lower()
    assert (await paying.open_link(invoice["pay_url"])).status == 303


async def test_session_expiry_is_retried_on_transient_errors(paying: Service,
                                                             standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 1_000)
    session = await session_of(paying, standin, request["url"])
    standin.failures = [503]
    await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    await paying.settle()
    assert standin.sessions[session["id"]]["status"] == "expired"
    assert len([c for c in standin.calls if c.path.endswith("/expire")]) == 2


# --- amounts Stripe would refuse (issue 12, item 11) -------------------------------------

@pytest.mark.parametrize("amount,currency,refused", [
    (50, "usd", False), (49, "usd", True), (30, "gbp", False), (29, "gbp", True),
    (50, "eur", False), (49, "eur", True), (50, "jpy", False), (49, "jpy", True),
    (17_500, "huf", False), (17_499, "huf", True), (1_000, "mxn", False), (999, "mxn", True),
    (99_999_999, "usd", False), (100_000_000, "usd", True), (100_000_000, "jpy", True),
    (1_250, "kwd", False), (1_255, "kwd", True), (1, "isk", False),
])
def test_stripe_refuses_charges_below_its_minimum_or_above_its_maximum(
        amount: int, currency: str, refused: bool) -> None:
    from processors.stripe.client import StripeProcessor

    processor = StripeProcessor(api_key="sk", api_base=None, webhook_secrets=(), tolerance=300)
    reason = processor.amount_refused(amount, currency)
    assert (reason is not None) is refused, reason


async def test_a_request_for_an_amount_stripe_would_refuse_is_amount_invalid(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 200_000_000)
    await paying.invoice("inv_gbp", 10_000, currency="gbp")
    for invoice_id, amount in (("inv_1", 49), ("inv_1", 100_000_000), ("inv_gbp", 29)):
        refused = await paying.request(invoice_id, amount, expect=422)
        assert refused["error"]["code"] == "amount_invalid", (invoice_id, amount)
    assert await paying.db.fetchval("select count(*) from payment_requests") == 0
    # Nothing owed but the invoices' own mails.
    assert await paying.db.fetchval(
        "select count(*) from outbox where key not like 'mail:invoice_sent:%'") == 0
    await paying.request("inv_1", 50)
    await paying.request("inv_gbp", 30)


async def test_a_pay_link_for_a_rest_stripe_would_refuse_is_a_410_to_the_invoice_page(
        paying: Service, standin: StripeStandIn) -> None:
    invoice = await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 5_000)
    await paying.call("POST", "/v1/invoices/inv_1/payments",
                      {"id": "cheque_1", "amount": 9_970, "method": "check"}, expect=201)
    for url in (invoice["pay_url"], request["url"]):  # 0.30 USD remains: below Stripe's 0.50
        gone = await paying.open_link(url)
        assert gone.status == 410, await gone.text()
        body = await gone.text()
        assert "cannot be paid online" in body and f'href="{invoice["invoice_url"]}"' in body
    assert standin.calls_to("/v1/checkout/sessions") == []


async def test_a_processor_refusal_of_a_pay_link_is_a_410_not_a_503(
        paying: Service, standin: StripeStandIn) -> None:
    invoice = await paying.invoice("inv_1", 1_000)
    standin.failures = [400]  # Stripe says no to this session (an amount it refuses, say)
    gone = await paying.open_link(invoice["pay_url"])
    assert gone.status == 410
    body = await gone.text()
    assert "cannot be paid online" in body and f'href="{invoice["invoice_url"]}"' in body
    assert (await paying.open_link(invoice["pay_url"])).status == 303
