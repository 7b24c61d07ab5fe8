"""The customer chooses how to pay, per payment (CONTRACT §6 "Choosing how to pay").

Stripe (the stand-in, by card) and the fake processor of tests/fake_processor.py (by
Direct Debit, taking `gbp` and `usd` only) are both configured. Where both take the
invoice's currency, the pay link is a page offering each way as a button of one form,
and the invoice page's forms offer the same choice; where one does, everything is as it
was. The session row names the processor it was made through, and what follows (expiry,
reconcile, refunds) goes back to it.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp import ClientResponse, FormData
from aiohttp.test_utils import TestClient

from core.limits import CHECKOUT_LIMIT
from core.settings import Settings
from handlers.keys import SERVICES
from ledger import checkout
from sandbox.stripe import StripeStandIn
from tests.conftest import FAST_RETRIES, replace, with_stripe
from tests.fake_processor import ORIGIN as FAKE_ORIGIN
from tests.fake_processor import FakeStore, notice, registry
from tests.test_operations import reconcile
from tests.test_pages import ORIGIN, partial_invoice, path_of, post, sessions_made, text_of
from tests.test_second_processor import FakeService
from worker.app import create_app

CURRENCIES = frozenset({"gbp", "usd"})


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
async def choosing(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool,
                   standin: StripeStandIn, store: FakeStore) -> FakeService:
    """Stripe (card, every currency, the default) and the fake (Direct Debit, gbp and usd)."""
    configured = replace(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                         public_url="http://settle.test", retry_base_seconds=FAST_RETRIES)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(configured, registry(store, currencies=CURRENCIES)))
    service = FakeService(client, configured, db)
    service.store = store
    service.currencies = CURRENCIES
    await service.customer()
    return service


async def choose(svc: FakeService, url: str, way: str | None,
                 headers: dict[str, str] | None = None) -> ClientResponse:
    """Press a way's button on a pay link's page (or send its form naming no way)."""
    return await svc.client.post(urlsplit(url).path, data={} if way is None else {"way": way},
                                 headers=ORIGIN if headers is None else headers,
                                 allow_redirects=False)


async def sessions(db: asyncpg.Pool) -> list[tuple[str, str, str]]:
    """(id, processor, status) of every session, oldest first."""
    rows = await db.fetch("select id, processor, status from checkout_sessions order by created_at")
    return [(r["id"], r["processor"], r["status"]) for r in rows]


async def expiries_owed(db: asyncpg.Pool) -> list[tuple[str, str]]:
    rows = await db.fetch("""select payload ->> 'processor' as processor,
                                    payload ->> 'session_id' as session_id
                             from outbox where kind = 'expire_checkout' order by id""")
    return [(r["processor"], r["session_id"]) for r in rows]


BUTTONS = re.compile(r'<button type="submit" name="way" value="([a-z_]+)"[^>]*>([^<]*)</button>')


# --- the pay link ----------------------------------------------------------------------


async def test_a_link_in_a_currency_only_one_processor_takes_goes_straight_to_it(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    invoice = await choosing.invoice("inv_1", 10_000, currency="chf")
    response = await choosing.open_link(invoice["pay_url"])
    assert response.status == 303
    session = standin.session_for_url(response.headers["Location"])
    assert (session["amount_total"], session["currency"]) == (10_000, "chf")
    assert [(p, s) for _, p, s in await sessions(db)] == [("stripe", "open")]
    assert choosing.store.sessions == {}
    # Its invoice page looks as it did before there was a choice: one button each.
    body = await (await choosing.client.get(path_of(invoice["invoice_url"]))).text()
    assert 'id="pay-rest"' in body and 'name="way"' not in body


async def test_with_two_processors_the_link_offers_each_way_as_a_button_of_one_form(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    await choosing.invoice("inv_1", 10_000, currency="gbp", number="GB-0001")
    request = await choosing.request("inv_1", 3_000, note="The first instalment")
    response = await choosing.open_link(request["url"])
    assert response.status == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = await response.text()
    said = text_of(body)
    assert "Pay £30.00" in said and "for invoice GB-0001" in said
    assert "The first instalment" in said
    assert body.count("<form") == 1
    assert f'<form method="post" action="{urlsplit(request["url"]).path}">' in body
    assert BUTTONS.findall(body) == [("card", "Card"), ("direct_debit", "Direct Debit")]
    # Looking costs no processor anything.
    assert sessions_made(standin) == 0 and choosing.store.sessions == {}
    assert await sessions(db) == []


async def test_each_button_leads_to_its_processors_page_and_the_row_says_whose(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    invoice = await choosing.invoice("inv_1", 10_000, currency="gbp")
    by_card = await choose(choosing, invoice["pay_url"], "card")
    assert by_card.status == 303
    card = standin.session_for_url(by_card.headers["Location"])
    assert (card["amount_total"], card["currency"]) == (10_000, "gbp")
    assert card["metadata"] == {"invoice_id": "inv_1"}
    by_debit = await choose(choosing, invoice["pay_url"], "direct_debit")
    assert by_debit.status == 303
    [debit] = choosing.store.sessions.values()
    assert by_debit.headers["Location"] == f"{FAKE_ORIGIN}/pay/{debit['id']}"
    assert (debit["amount"], debit["currency"], debit["metadata"]) == (
        10_000, "gbp", {"invoice_id": "inv_1"})
    assert [(i, p) for i, p, _ in await sessions(db)] == [
        (card["id"], "stripe"), (debit["id"], "fake")]


async def test_an_open_session_is_reused_per_processor_and_one_link_keeps_one_open(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    """Pressed again, the same way reuses its session; choosing the other way retires the
    first (its expiry goes to its own processor), and coming back makes a new one rather
    than offering a session being expired."""
    invoice = await choosing.invoice("inv_1", 10_000, currency="gbp")
    first = (await choose(choosing, invoice["pay_url"], "card")).headers["Location"]
    assert (await choose(choosing, invoice["pay_url"], "card")).headers["Location"] == first
    assert sessions_made(standin) == 1
    [(card_id, _, _)] = await sessions(db)
    debit = (await choose(choosing, invoice["pay_url"], "direct_debit")).headers["Location"]
    assert (await choose(choosing, invoice["pay_url"], "direct_debit")).headers["Location"] \
        == debit
    [debit_id] = choosing.store.sessions
    assert await expiries_owed(db) == [("stripe", card_id)]
    again = (await choose(choosing, invoice["pay_url"], "card")).headers["Location"]
    assert again != first and sessions_made(standin) == 2
    assert await expiries_owed(db) == [("stripe", card_id), ("fake", debit_id)]
    await choosing.settle()
    # Each expiry went back to the processor that made the session.
    assert standin.sessions[card_id]["status"] == "expired"
    assert ("expire_checkout", debit_id) in choosing.store.calls
    assert [s for _, _, s in await sessions(db)] == ["expired", "expired", "open"]
    assert len([c for c in choosing.store.calls if c[0] == "create_checkout"]) == 1


async def test_the_checkout_permit_counts_sessions_of_every_processor(
        choosing: FakeService, standin: StripeStandIn) -> None:
    invoice = await choosing.invoice("inv_1", 10_000, currency="gbp")
    ways = ["card", "direct_debit"]
    for n in range(CHECKOUT_LIMIT):
        assert (await choose(choosing, invoice["pay_url"], ways[n % 2])).status == 303
    refused = await choose(choosing, invoice["pay_url"], ways[CHECKOUT_LIMIT % 2])
    assert refused.status == 429
    assert "many times in the last few minutes" in text_of(await refused.text())
    made = sessions_made(standin) + len(choosing.store.sessions)
    assert made == CHECKOUT_LIMIT


@pytest.mark.parametrize("headers", [
    {}, {"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
], ids=["no-origin", "other-origin", "cross-site"])
async def test_a_choice_sent_from_elsewhere_is_403_and_makes_nothing(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool,
        headers: dict[str, str]) -> None:
    invoice = await choosing.invoice("inv_1", 10_000, currency="gbp")
    for way in ("card", "direct_debit"):
        response = await choose(choosing, invoice["pay_url"], way, headers=headers)
        assert response.status == 403
        assert "must be sent from the payment page" in text_of(await response.text())
    assert sessions_made(standin) == 0 and choosing.store.sessions == {}
    assert await sessions(db) == []


@pytest.mark.parametrize("currency,way", [
    ("gbp", "bank_transfer"), ("gbp", "Card"), ("gbp", ""), ("gbp", "x" * 5_000),
    ("chf", "direct_debit"),
], ids=["unknown", "case", "empty", "long", "not-offered-for-the-currency"])
async def test_a_way_not_offered_is_a_422_page_with_the_reason(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool, currency: str,
        way: str) -> None:
    invoice = await choosing.invoice("inv_1", 10_000, currency=currency)
    response = await choose(choosing, invoice["pay_url"], way)
    assert response.status == 422
    body = await response.text()
    assert "That way of paying is not offered for this payment" in text_of(body)
    assert way not in body or way in ("", "Card")
    assert sessions_made(standin) == 0 and choosing.store.sessions == {}


async def test_a_way_sent_as_a_file_is_refused_never_a_500(choosing: FakeService,
                                                           standin: StripeStandIn) -> None:
    """No page of settle's uploads a file: the form is unreadable (400), as elsewhere."""
    invoice = await choosing.invoice("inv_1", 10_000, currency="gbp")
    form = FormData()
    form.add_field("way", b"card", filename="way.txt", content_type="text/plain")
    response = await choosing.client.post(urlsplit(invoice["pay_url"]).path, data=form,
                                          headers=ORIGIN, allow_redirects=False)
    assert response.status == 400
    assert "This form could not be read" in text_of(await response.text())
    assert sessions_made(standin) == 0 and choosing.store.sessions == {}


async def test_a_cancelled_link_is_410_for_the_page_and_the_choice(
        choosing: FakeService, standin: StripeStandIn) -> None:
    await choosing.invoice("inv_1", 10_000, currency="gbp")
    request = await choosing.request("inv_1", 3_000)
    assert (await choosing.open_link(request["url"])).status == 200
    await choosing.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    for response in (await choosing.open_link(request["url"]),
                     await choose(choosing, request["url"], "card"),
                     await choose(choosing, request["url"], "direct_debit"),
                     # Gone first: no way, offered or not, pays a cancelled link.
                     await choose(choosing, request["url"], "bank_transfer")):
        assert response.status == 410
        said = text_of(await response.text())
        assert "Link cancelled" in said and "See the invoice" in said
    assert sessions_made(standin) == 0 and choosing.store.sessions == {}


async def test_a_paid_invoices_pay_now_link_is_410_for_the_page_and_the_choice(
        choosing: FakeService) -> None:
    invoice = await choosing.invoice("inv_1", 1_000, currency="gbp")
    choosing.store.payment("FP1", "inv_1", 1_000, "confirmed", currency="GBP")
    await choosing.post(notice("FEV1", "payments", "confirmed", payment="FP1"))
    await choosing.settle()
    for response in (await choosing.open_link(invoice["pay_url"]),
                     await choose(choosing, invoice["pay_url"], "card")):
        assert response.status == 410


async def test_a_direct_debit_chosen_is_reconciled_and_refunded_through_its_processor(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    """The session row names the fake, so reconcile asks the fake about it (its webhook
    lost), and the payment it made is refunded through the fake."""
    invoice = await choosing.invoice("inv_1", 5_000, currency="gbp")
    await choose(choosing, invoice["pay_url"], "direct_debit")
    [session] = choosing.store.sessions.values()
    choosing.store.payment("FP1", "inv_1", 5_000, "confirmed", currency="GBP")
    session.update(status="complete", payment_id="FP1")
    result = await reconcile(choosing, "inv_1")
    assert result["errors"] == []
    assert ("retrieve_checkout", session["id"]) in choosing.store.calls
    assert standin.calls_to(f"/v1/checkout/sessions/{session['id']}") == []
    payment = await choosing.payment("FP1")
    assert (payment["status"], payment["source"]) == ("succeeded", "fake")
    assert (await choosing.get_invoice("inv_1"))["status"] == "paid"
    await choosing.call("POST", "/v1/payments/FP1/refunds", {"id": "rf_1", "amount": 1_000},
                        expect=202)
    await choosing.settle()
    assert ("refund", "FP1") in choosing.store.calls and standin.refunds == {}


async def test_a_processor_that_does_not_take_the_currency_makes_no_session(
        choosing: FakeService, db: asyncpg.Pool) -> None:
    """The ledger holds to it too, whatever processor it is handed."""
    invoice = await choosing.invoice("inv_1", 10_000, currency="chf")
    token = urlsplit(invoice["pay_url"]).path.rsplit("/", 1)[1]
    services = choosing.client.app[SERVICES]
    gone = await checkout.open_link(services.books, token, services.processors["fake"],
                                    services.checkout_permit)
    assert gone == checkout.Gone("no_processor", invoice["invoice_url"])
    assert choosing.store.sessions == {} and await sessions(db) == []


# --- the invoice page ----------------------------------------------------------------


async def test_the_invoice_pages_forms_offer_the_same_choice(
        choosing: FakeService, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    invoice = await partial_invoice(choosing, currency="gbp")
    body = await (await choosing.client.get(path_of(invoice["invoice_url"]))).text()
    assert 'id="pay-rest"' not in body and 'id="pay-amount"' not in body
    assert BUTTONS.findall(body) == [("card", "Card"), ("direct_debit", "Direct Debit")] * 2
    assert "Pay the rest: £100.00" in text_of(body) and "Pay this amount by" in text_of(body)
    rest = await post(choosing, invoice, "pay", {"what": "rest", "way": "direct_debit"})
    assert rest.status == 303 and rest.headers["Location"].startswith(f"{FAKE_ORIGIN}/pay/")
    [debit] = choosing.store.sessions.values()
    assert debit["amount"] == 10_000
    part = await post(choosing, invoice, "pay", {"what": "amount", "amount": "25.50",
                                                 "way": "card"})
    assert part.status == 303
    card = standin.session_for_url(part.headers["Location"])
    assert (card["amount_total"], card["metadata"]["amount_source"]) == (2_550, "customer")
    rows = await db.fetch("select processor, amount, amount_source from checkout_sessions "
                          "order by created_at")
    assert [tuple(r) for r in rows] == [("fake", 10_000, "link"), ("stripe", 2_550, "customer")]
    # The page's Pay the rest is the invoice's Pay Now: its open session is the link's too.
    assert (await choose(choosing, invoice["pay_url"], "direct_debit")).headers["Location"] \
        == rest.headers["Location"]


async def test_a_way_not_offered_on_the_invoice_page_is_the_page_again_with_422(
        choosing: FakeService, standin: StripeStandIn) -> None:
    invoice = await partial_invoice(choosing, currency="gbp")
    for form in ({"what": "rest", "way": "cheque"},
                 {"what": "amount", "amount": "25.50", "way": "bank_transfer"}):
        response = await post(choosing, invoice, "pay", form)
        assert response.status == 422
        body = await response.text()
        assert "That way of paying is not offered for this invoice" in text_of(body)
        assert BUTTONS.findall(body)  # the choice again, to pick from
    assert 'value="25.50"' in body  # what the customer typed is kept
    assert sessions_made(standin) == 0 and choosing.store.sessions == {}


async def test_the_pages_let_forms_lead_to_every_configured_processor(
        choosing: FakeService, standin: StripeStandIn) -> None:
    invoice = await choosing.invoice("inv_1", 10_000, currency="gbp")
    for path in (path_of(invoice["invoice_url"]), path_of(invoice["pay_url"])):
        policy = (await choosing.client.get(path, allow_redirects=False)).headers[
            "Content-Security-Policy"]
        assert f"form-action 'self' {standin.base} {FAKE_ORIGIN};" in policy


# --- a Direct Debit on its way -------------------------------------------------------


async def test_a_direct_debit_on_its_way_is_said_plainly_and_looked_at_slowly(
        choosing: FakeService) -> None:
    invoice = await partial_invoice(choosing, currency="gbp")
    choosing.store.payment("FP1", "inv_1", 3_000, "submitted", currency="GBP")
    await choosing.post(notice("FEV1", "payments", "submitted", payment="FP1"))
    await choosing.settle()
    body = await (await choosing.client.get(path_of(invoice["invoice_url"]))).text()
    said = text_of(body)
    assert "Your Direct Debit payment of £30.00 is on its way; it usually takes 3–5 working " \
           "days to confirm." in said
    assert "Direct Debit On its way £30.00" in said
    # Nothing more to pay for that money, and no reload every few seconds for days: only
    # the slow look of confirm.js.
    assert BUTTONS.findall(body) == [] and 'id="pay-rest"' not in body
    assert 'http-equiv="refresh"' not in body
    assert set(re.findall(r'data-waiting="([^"]*)"', body)) == {"direct-debit"}
    choosing.store.payments["FP1"]["status"] = "confirmed"
    await choosing.post(notice("FEV2", "payments", "confirmed", payment="FP1"))
    await choosing.settle()
    body = await (await choosing.client.get(path_of(invoice["invoice_url"]))).text()
    assert "data-waiting" not in body and "on its way" not in text_of(body)
    assert BUTTONS.findall(body) == [("card", "Card"), ("direct_debit", "Direct Debit")] * 2


async def test_back_from_a_direct_debit_being_submitted_the_notice_says_so(
        choosing: FakeService, db: asyncpg.Pool) -> None:
    invoice = await choosing.invoice("inv_1", 3_000, currency="gbp")
    await choose(choosing, invoice["pay_url"], "direct_debit")
    [session] = choosing.store.sessions.values()
    # The customer set up the Direct Debit; the payment is submitted, and reconcile learns
    # which payment the session made.
    choosing.store.payment("FP1", "inv_1", 3_000, "submitted", currency="GBP")
    session.update(status="complete", payment_id="FP1")
    await choosing.post(notice("FEV1", "payments", "submitted", payment="FP1"))
    await choosing.settle()
    await reconcile(choosing, "inv_1")
    body = await (await choosing.client.get(
        f"{path_of(invoice['invoice_url'])}?session={session['id']}")).text()
    said = text_of(body)
    assert "Your Direct Debit payment of £30.00 is on its way; it usually takes 3–5 working " \
           "days to confirm." in said
    assert "A bank transfer takes a few days" not in said
    assert 'http-equiv="refresh"' not in body
    assert set(re.findall(r'data-waiting="([^"]*)"', body)) == {"direct-debit"}
