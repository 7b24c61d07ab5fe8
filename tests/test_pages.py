"""The customer's pages over plain HTTP (CONTRACT §6): the invoice page, its two forms and
every way they refuse, coming back from Checkout, the PDF, the customer page, and what
keeps them private."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import ClientResponse
from pypdf import PdfReader

from core import logs
from present import formats

from sandbox.events import session_completed
from sandbox.stripe import StripeStandIn
from tests.service import Service

ORIGIN = {"Origin": "http://settle.test"}  # the `paying` service's PUBLIC_URL


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def page(svc: Service, invoice: dict[str, Any], query: str = "") -> tuple[int, str]:
    response = await svc.client.get(path_of(invoice["invoice_url"]) + query)
    return response.status, await response.text()


async def post(svc: Service, invoice: dict[str, Any], action: str, form: dict[str, str] | None = None,
               headers: dict[str, str] | None = None) -> ClientResponse:
    return await svc.client.post(f"{path_of(invoice['invoice_url'])}/{action}", data=form or {},
                                 headers=ORIGIN if headers is None else headers,
                                 allow_redirects=False)


def text_of(body: str) -> str:
    """What a person reads: the page without its tags, spaces folded."""
    body = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)).replace("\xa0", " ").strip()


async def partial_invoice(svc: Service, invoice_id: str = "inv_1", **fields: Any) -> dict[str, Any]:
    body = {"allow_partial": True, "min_partial_amount": 1_000, "due_date": "2030-01-31",
            "auto_apply_credit": False,
            "lines": [{"description": "Design work", "amount": 7_000},
                      {"description": "Hosting <b>& support</b>", "amount": 3_000}], **fields}
    return await svc.invoice(invoice_id, 10_000, **body)  # type: ignore[no-any-return]


def sessions_made(standin: StripeStandIn) -> int:
    return len(standin.calls_to("/v1/checkout/sessions"))


# --- the invoice page ----------------------------------------------------------------


async def test_the_invoice_page_shows_what_was_paid_and_what_remains(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    assert re.fullmatch(r"http://settle\.test/i/[A-Za-z0-9_-]{32,}", invoice["invoice_url"])
    await svc.deliver(session_completed("inv_1", 2_550, "pi_1"))
    await svc.call("POST", "/v1/invoices/inv_1/credit-notes",
                   {"id": "cn_1", "amount": 500, "reason": "Late delivery"}, expect=201)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_500, "currency": "usd", "reason": "Goodwill"},
                   expect=201)

    response = await svc.client.get(path_of(invoice["invoice_url"]))
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    body = await response.text()
    said = text_of(body)
    for expected in ("Invoice N-inv_1", "Partially paid", "Due Jan 31, 2030", "For Ada",
                     "Total $100.00", "Paid $25.50", "Taken off by credit notes $5.00",
                     "Remaining $69.50", "Design work $70.00", "Card $25.50 $25.50",
                     "Late delivery", "Pay the rest: $69.50", "At least $10.00, at most $69.50",
                     "You have $15.00 of credit", "Use my credit: $15.00", "settle"):
        assert expected in said, expected
    # What the caller wrote is text, never markup.
    assert "Hosting &lt;b&gt;&amp; support&lt;/b&gt;" in body and "<b>&" not in body
    assert 'href="/i/' in body and ".pdf" in body


async def test_the_page_speaks_the_customers_locale(paying: Service) -> None:
    svc = paying
    await svc.call("PUT", "/v1/customers/cus_1",
                   {"email": "pay@example.com", "name": "Ada", "locale": "de-DE"})
    invoice = await svc.invoice("inv_1", 123_450, due_date="2030-01-31")
    said = text_of((await page(svc, invoice))[1])
    assert "Fällig" not in said  # the words stay English; the figures are German
    assert "Due 31.01.2030" in said and "1.234,50 $" in said


async def test_a_paid_invoices_page_is_its_receipt_and_a_void_one_says_so(
        paying: Service) -> None:
    svc = paying
    invoice = await svc.invoice("inv_1", 5_000)
    await svc.deliver(session_completed("inv_1", 5_000, "pi_1"))
    said = text_of((await page(svc, invoice))[1])
    assert "Receipt for invoice N-inv_1" in said and "Paid in full on" in said
    assert "Remaining $0.00" in said and "Pay the rest" not in said

    void = await svc.invoice("inv_2", 5_000)
    await svc.call("POST", "/v1/invoices/inv_2/void")
    said = text_of((await page(svc, void))[1])
    assert "Void" in said and "withdrawn" in said and "Pay the rest" not in said

    draft = await svc.invoice("inv_3", 5_000, send=False)
    said = text_of((await page(svc, draft))[1])
    assert "not been issued yet" in said and "Pay" not in said.replace("Paid", "")


async def test_without_a_processor_the_page_offers_no_payment(svc: Service) -> None:
    invoice = await partial_invoice(svc)
    said = text_of((await page(svc, invoice))[1])
    assert "Pay the rest" not in said and "online payment is not available" in said
    response = await post(svc, invoice, "pay", {"what": "rest"},
                          headers={"Origin": "http://localhost:8080"})
    assert response.status == 409 and "not available" in text_of(await response.text())


@pytest.mark.parametrize("path", ["/i/{}", "/i/{}.pdf", "/c/{}", "/pay/{}", "/i/short",
                                  "/i/a.b", "/i/{}/nothing", "/c/"])
async def test_an_unknown_token_is_a_404_page(paying: Service, path: str) -> None:
    response = await paying.client.get(path.format("A" * 40))
    assert response.status == 404
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    assert "Page not found" in await response.text()


async def test_the_pages_are_private_and_load_nothing_from_elsewhere(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    customer = await svc.call("GET", "/v1/customers/cus_1")
    for path in (path_of(invoice["invoice_url"]), path_of(invoice["invoice_url"]) + ".pdf",
                 path_of(customer["portal_url"]), path_of(invoice["pay_url"]), "/i/" + "x" * 30):
        response = await svc.client.get(path, allow_redirects=False)
        assert response.headers["Cache-Control"] == "no-store", path
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert f"form-action 'self' {standin.base}" in policy
        assert response.headers["Referrer-Policy"] == "same-origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        if response.headers.get("Content-Type", "").startswith("text/html"):
            body = await response.text()
            # Every src and href is this origin's own (or the invoice page's own address).
            for link in re.findall(r'(?:src|href)="([^"]*)"', body):
                assert link == "" or link.startswith(("/", "#", "http://settle.test/")), link
            assert "style=" not in body and "<script>" not in body
    css = await svc.client.get(re.search(r'href="(/static/site\.css\?v=\w+)"',
                                         (await page(svc, invoice))[1]).group(1))  # type: ignore[union-attr]
    assert css.status == 200 and css.headers["Content-Type"].startswith("text/css")
    assert "immutable" in css.headers["Cache-Control"]
    for bad in ("/static/nothing.css", "/static/..%2Fpdf.py", "/static/"):
        assert (await svc.client.get(bad)).status == 404


# --- paying on the page ----------------------------------------------------------------


async def test_pay_the_rest_goes_to_checkout_and_back_to_the_page(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.deliver(session_completed("inv_1", 2_550, "pi_1"))
    response = await post(svc, invoice, "pay", {"what": "rest"})
    assert response.status == 303
    assert response.headers["Cache-Control"] == "no-store"
    session = standin.session_for_url(response.headers["Location"])
    assert (session["amount_total"], session["currency"]) == (7_450, "usd")
    assert session["metadata"] == {"invoice_id": "inv_1"} == session["_intent_metadata"]
    assert session["success_url"] == invoice["invoice_url"] + "?session={CHECKOUT_SESSION_ID}"
    assert session["cancel_url"] == invoice["invoice_url"]
    # Pressed again, the same session; and it is the invoice's Pay Now session too.
    again = await post(svc, invoice, "pay", {"what": "rest"})
    assert again.headers["Location"] == response.headers["Location"]
    assert (await svc.open_link(invoice["pay_url"])).headers["Location"] == session["url"]
    assert sessions_made(standin) == 1


async def test_pay_another_amount_charges_what_the_customer_typed(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": " 25.5 "})
    assert response.status == 303
    session = standin.session_for_url(response.headers["Location"])
    assert session["amount_total"] == 2_550
    metadata = {"invoice_id": "inv_1", "amount_source": "customer"}
    assert session["metadata"] == metadata == session["_intent_metadata"]
    # The same amount again reuses it; another amount retires it for a new one.
    same = await post(svc, invoice, "pay", {"what": "amount", "amount": "25.50"})
    assert same.headers["Location"] == response.headers["Location"]
    other = await post(svc, invoice, "pay", {"what": "amount", "amount": "40"})
    assert standin.session_for_url(other.headers["Location"])["amount_total"] == 4_000
    assert await svc.db.fetchval("select count(*) from outbox where key = $1",
                                 f"expire:{session['id']}") == 1
    # Pay the rest is not the customer's amount: its own session.
    rest = await post(svc, invoice, "pay", {"what": "rest"})
    assert standin.session_for_url(rest.headers["Location"])["amount_total"] == 10_000
    assert sessions_made(standin) == 3

    await svc.deliver(*standin.pay(standin.session_for_url(other.headers["Location"])["id"]))
    paid = await svc.get_invoice("inv_1")
    assert (paid["amount_paid"], paid["amount_remaining"]) == (4_000, 6_000)


@pytest.mark.parametrize("currency,typed,charged", [
    ("jpy", "500", 500), ("jpy", "1500.00", 1_500), ("kwd", "1.250", 1_250), ("kwd", "2.5", 2_500),
    ("bhd", "0.010", 10), ("eur", "12,5", None),
])
async def test_an_amount_by_the_currencys_real_exponent(
        paying: Service, standin: StripeStandIn, currency: str, typed: str,
        charged: int | None) -> None:
    svc = paying
    invoice = await svc.invoice("inv_1", 100_000, currency=currency, allow_partial=True)
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": typed})
    if charged is None:  # a comma, for a customer whose locale writes a decimal point
        assert response.status == 422
        return
    assert response.status == 303, text_of(await response.text())
    assert standin.session_for_url(response.headers["Location"])["amount_total"] == charged


async def test_a_decimal_comma_for_a_locale_that_writes_one(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    await svc.call("PUT", "/v1/customers/cus_1",
                   {"email": "pay@example.com", "locale": "fr-CA"})
    invoice = await svc.invoice("inv_1", 10_000, currency="eur", allow_partial=True)
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": "12,50"})
    assert standin.session_for_url(response.headers["Location"])["amount_total"] == 1_250


@pytest.mark.parametrize("typed,charged", [("1.234,56", 123_456), ("1234,56", 123_456),
                                           ("25", 2_500), ("0,5", None), ("1234.56", None)])
async def test_a_de_de_customer_types_amounts_as_their_page_writes_them(
        paying: Service, standin: StripeStandIn, typed: str, charged: int | None) -> None:
    svc = paying
    await svc.call("PUT", "/v1/customers/cus_1", {"email": "pay@example.com", "locale": "de-DE"})
    invoice = await svc.invoice("inv_1", 200_000, currency="eur", allow_partial=True,
                                min_partial_amount=1_000)
    said = text_of((await page(svc, invoice))[1])
    assert "At least 10,00 €, at most 2.000,00 €. Type digits, like 2000,00." in said
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": typed})
    if charged is not None:
        assert response.status == 303, text_of(await response.text())
        assert standin.session_for_url(response.headers["Location"])["amount_total"] == charged
        return
    assert response.status == 422
    said = text_of(await response.text())
    assert ("The least you can pay now is 10,00 €." if typed == "0,5" else
            "That is not how amounts are written here: type it like 2000,00.") in said


@pytest.mark.parametrize("typed,said", [
    ("2000,01", "That is more than the 2.000,00 € that remains: you can pay at most 2.000,00 €."),
    ("12,345", "That has more decimals than EUR uses: type it like 2000,00."),
    ("zwölf", "Type the amount in digits, like 2000,00."),
])
async def test_every_reason_is_in_the_customers_locale(
        paying: Service, typed: str, said: str) -> None:
    svc = paying
    await svc.call("PUT", "/v1/customers/cus_1", {"email": "pay@example.com", "locale": "de-DE"})
    invoice = await svc.invoice("inv_1", 200_000, currency="eur", allow_partial=True)
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": typed})
    assert response.status == 422
    assert said in text_of(await response.text())


@pytest.mark.parametrize("typed,said", [
    ("abc", "Type the amount in digits, like 100.00"),
    ("", "Type the amount in digits"),
    ("1,00.00", "That is not how amounts are written here: type it like 100.00"),
    ("100,00", "That is not how amounts are written here"),
    ("25.505", "more decimals than USD uses"),
    ("0", "Type an amount above zero"),
    ("-5", "Type the amount in digits"),
    ("9.99", "The least you can pay now is $10.00"),
    ("100.01", "That is more than the $100.00 that remains"),
    ("99999999999999999", "That is more than the $100.00 that remains"),
    ("99999999999999", "That is more than the $100.00 that remains"),
])
async def test_an_amount_refused_says_why_on_the_page_with_422(
        paying: Service, standin: StripeStandIn, typed: str, said: str) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": typed})
    assert response.status == 422
    body = await response.text()
    assert said in text_of(body)
    # Said at the field too, the field marked, and what was typed kept in it.
    assert 'aria-invalid="true"' in body and 'id="amount-error"' in body
    assert f'value="{typed}"' in body
    assert sessions_made(standin) == 0


async def test_the_minimum_gives_way_to_what_remains(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.deliver(session_completed("inv_1", 9_500, "pi_1"))
    low = await post(svc, invoice, "pay", {"what": "amount", "amount": "4.99"})
    assert low.status == 422 and "The least you can pay now is $5.00" in text_of(await low.text())
    ok = await post(svc, invoice, "pay", {"what": "amount", "amount": "5"})
    assert ok.status == 303


async def test_every_other_refusal_of_a_payment(paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    whole = await svc.invoice("inv_whole", 10_000)  # allow_partial is off
    response = await post(svc, whole, "pay", {"what": "amount", "amount": "20"})
    assert response.status == 422 and "paid in full, not in parts" in text_of(await response.text())

    kwd = await svc.invoice("inv_kwd", 10_000, currency="kwd", allow_partial=True)
    response = await post(svc, kwd, "pay", {"what": "amount", "amount": "1.255"})
    assert response.status == 422 and "cannot be paid online" in text_of(await response.text())

    paid = await partial_invoice(svc, "inv_paid")
    await svc.deliver(session_completed("inv_paid", 10_000, "pi_paid"))
    for form in ({"what": "rest"}, {"what": "amount", "amount": "20"}):
        response = await post(svc, paid, "pay", form)
        assert response.status == 409 and "already paid" in text_of(await response.text())

    void = await partial_invoice(svc, "inv_void")
    await svc.call("POST", "/v1/invoices/inv_void/void")
    response = await post(svc, void, "pay", {"what": "rest"})
    assert response.status == 409 and "withdrawn" in text_of(await response.text())

    draft = await svc.invoice("inv_draft", 10_000, send=False)
    response = await post(svc, draft, "pay", {"what": "rest"})
    assert response.status == 409 and "not been issued" in text_of(await response.text())
    assert sessions_made(standin) == 0


async def test_pay_another_amount_stripe_would_refuse_says_why_with_422(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc, min_partial_amount=0)
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": "0.49"})
    assert response.status == 422
    body = await response.text()
    assert "This amount cannot be paid online: the payment provider does not charge it" \
        in text_of(body) and 'value="0.49"' in body
    # The processor's own words are in English figures: not on the customer's page.
    assert "Stripe charges" not in text_of(body)
    assert sessions_made(standin) == 0


async def test_pay_the_rest_when_stripe_would_refuse_it_is_a_410_page_to_the_invoice(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "cheque_1", "amount": 9_970, "method": "check"}, expect=201)
    # 0.30 USD remains, below Stripe's least charge: the page does not offer it...
    said = text_of((await page(svc, invoice))[1])
    assert "Pay the rest" not in said and "What remains cannot be paid online" in said
    # ...and a form sent anyway is told so, with the way back to the invoice.
    response = await post(svc, invoice, "pay", {"what": "rest"})
    assert response.status == 410
    body = await response.text()
    assert "cannot be paid online" in text_of(body)
    assert f'href="{invoice["invoice_url"]}"' in body
    assert sessions_made(standin) == 0


async def test_a_processor_refusal_on_the_invoice_page_is_never_a_500(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    standin.failures = [400]  # Stripe says no to the session
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": "25"})
    assert response.status == 422
    body = await response.text()
    assert "This amount cannot be paid online" in text_of(body) and 'value="25"' in body
    standin.failures = [400]
    response = await post(svc, invoice, "pay", {"what": "rest"})
    body = await response.text()
    assert response.status == 410 and "cannot be paid online" in text_of(body)
    assert f'href="{invoice["invoice_url"]}"' in body
    assert (await svc.get_invoice("inv_1"))["amount_remaining"] == 10_000
    assert (await post(svc, invoice, "pay", {"what": "rest"})).status == 303


@pytest.mark.parametrize("headers", [
    {}, {"Origin": "https://evil.example"}, {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site", "Origin": "http://settle.test"},
    {"Sec-Fetch-Site": "same-site"}, {"Referer": "http://settle.test/i/x"},
])
async def test_a_form_sent_from_elsewhere_changes_nothing(
        paying: Service, standin: StripeStandIn, headers: dict[str, str]) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_500, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    for action, form in (("pay", {"what": "rest"}), ("pay", {"what": "amount", "amount": "20"}),
                         ("credit", {})):
        response = await post(svc, invoice, action, form, headers=headers)
        assert response.status == 403
        assert "must be sent from the invoice page" in text_of(await response.text())
    assert sessions_made(standin) == 0
    assert await svc.balance() == {"usd": 1_500}
    # A browser that says the form is its own page's is believed.
    ok = await post(svc, invoice, "credit", headers={"Sec-Fetch-Site": "same-origin"})
    assert ok.status == 303


async def test_only_posts_change_anything(paying: Service, standin: StripeStandIn) -> None:
    """A GET of a form's address (the page opened again from history) leads back to the
    invoice page and changes nothing."""
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_500, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    page = path_of(invoice["invoice_url"])
    for action in ("pay", "credit"):
        response = await svc.client.get(f"{page}/{action}", allow_redirects=False)
        assert response.status == 303
        assert response.headers["Location"] == page
        assert response.headers["Cache-Control"] == "no-store"
        followed = await svc.client.get(f"{page}/{action}")
        assert followed.status == 200 and "Pay the rest" in text_of(await followed.text())
    unknown = await svc.client.get("/i/" + "x" * 40 + "/pay", allow_redirects=False)
    assert unknown.status == 404
    assert sessions_made(standin) == 0
    assert await svc.balance() == {"usd": 1_500}


SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
UNREADABLE_FORMS = [
    ("multipart/form-data", b'--x\r\nContent-Disposition: form-data; name="what"\r\n\r\n'
                            b'rest\r\n--x--\r\n'),
    ("multipart/form-data; boundary=x", b"not a part"),
    ("multipart/form-data; boundary=x", b"--x\r\n\r\na part without a name\r\n--x--\r\n"),
    ("multipart/form-data; boundary=x", b'--x\r\nContent-Disposition: form-data; name="what"'
                                        b'\r\nContent-Transfer-Encoding: rot13\r\n\r\nerfg'
                                        b'\r\n--x--\r\n'),
    ("multipart/form-data; boundary=x", b"--x\r\nNot a header\r\n\r\nrest\r\n--x--\r\n"),
    ("application/x-www-form-urlencoded", b"what=amount&amount=\xff"),
    ("application/x-www-form-urlencoded; charset=nope", b"what=rest"),
    ("application/x-www-form-urlencoded; charset=utf-16", b"what=rest"),
]


def assert_private_page(response: ClientResponse) -> None:
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Cache-Control"] == "no-store"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


@pytest.mark.parametrize("content_type,raw", UNREADABLE_FORMS,
                         ids=["no-boundary", "no-part", "no-name", "unknown-transfer-encoding",
                              "bad-part-header", "not-utf8", "unknown-charset", "wrong-charset"])
async def test_a_form_that_cannot_be_read_is_a_400_page_and_changes_nothing(
        paying: Service, standin: StripeStandIn, content_type: str, raw: bytes) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_500, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    for action in ("pay", "credit"):
        response = await svc.client.post(f"{path_of(invoice['invoice_url'])}/{action}", data=raw,
                                         headers={**SAME_ORIGIN, "Content-Type": content_type},
                                         allow_redirects=False)
        assert response.status == 400, (action, await response.text())
        assert_private_page(response)
        assert "could not be read" in text_of(await response.text())
    assert sessions_made(standin) == 0
    assert await svc.balance() == {"usd": 1_500}
    assert (await svc.get_invoice("inv_1"))["amount_credited"] == 0
    # An unknown token is the one 404 page, whatever the body.
    response = await svc.client.post(f"/i/{'A' * 40}/pay", data=raw, headers={
        **SAME_ORIGIN, "Content-Type": content_type})
    assert response.status == 404


async def test_a_form_too_large_is_a_private_413_page(paying: Service,
                                                     standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    raw = b"what=rest&pad=" + b"x" * (1024**2)
    for action in ("pay", "credit"):
        response = await svc.client.post(f"{path_of(invoice['invoice_url'])}/{action}", data=raw,
                                         headers={**SAME_ORIGIN, "Content-Type":
                                                  "application/x-www-form-urlencoded"},
                                         allow_redirects=False)
        assert response.status == 413, action
        assert_private_page(response)
    assert sessions_made(standin) == 0


# --- back from Checkout -----------------------------------------------------------------


async def test_back_from_checkout_the_payment_is_being_confirmed_until_applied(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    response = await post(svc, invoice, "pay", {"what": "amount", "amount": "25.50"})
    session = standin.session_for_url(response.headers["Location"])
    events = standin.pay(session["id"])
    back = standin.success_url(session["id"])
    assert back == f"{invoice['invoice_url']}?session={session['id']}"

    status, body = await page(svc, invoice, f"?session={session['id']}")
    assert status == 200 and 'data-state="confirming"' in body
    assert "Your payment of $25.50 is being confirmed" in text_of(body)
    assert "Remaining $100.00" in text_of(body)
    # Nothing more to pay while it is confirmed (it would pay twice); the page looks again.
    assert "paying now as well would pay twice" in text_of(body)
    assert 'id="pay-rest"' not in body and 'id="pay-amount"' not in body
    assert REFRESH in body

    await svc.deliver(*events)
    status, body = await page(svc, invoice, f"?session={session['id']}")
    assert 'data-state="confirming"' not in body
    said = text_of(body)
    assert "your payment of $25.50 was received" in said and "Remaining $74.50" in said
    assert 'id="pay-rest"' in body and REFRESH not in body

    # A session of another invoice, or nonsense, says nothing.
    other = await partial_invoice(svc, "inv_2")
    assert "being confirmed" not in (await page(svc, other, f"?session={session['id']}"))[1]
    assert (await page(svc, invoice, "?session=%00%20x"))[0] == 200


async def test_back_from_a_bank_transfer_it_is_on_its_way(
        paying: Service, standin: StripeStandIn) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    response = await post(svc, invoice, "pay", {"what": "rest"})
    session = standin.session_for_url(response.headers["Location"])
    await svc.deliver(*standin.pay(session["id"], payment_status="unpaid"))
    for query in (f"?session={session['id']}", ""):  # back from Checkout, and any time later
        body = (await page(svc, invoice, query))[1]
        said = text_of(body)
        assert "On its way" in said and "Bank transfer" in said
        assert "A payment of $100.00 is on its way and not counted yet: paying now as well " \
               "would pay twice" in said
        assert 'id="pay-rest"' not in body and 'id="pay-amount"' not in body
        assert REFRESH in body
    assert "Your payment of $100.00 is on its way" in text_of(
        (await page(svc, invoice, f"?session={session['id']}"))[1])
    await svc.deliver(*standin.transfer(session["id"], succeeded=False))
    body = (await page(svc, invoice, f"?session={session['id']}"))[1]
    said = text_of(body)
    assert "did not go through" in said and "Bank transfer Did not go through" in said
    assert 'id="pay-rest"' in body and REFRESH not in body


REFRESH = '<noscript><meta http-equiv="refresh" content="5"></noscript>'


async def test_a_receipt_after_an_overpayment_says_what_went_to_credit(
        paying: Service, standin: StripeStandIn) -> None:
    """§6: each payment's part that went to credit said in words, and the payments shown add
    up with what the page says was paid (the demo's late bank transfer)."""
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.deliver(session_completed("inv_1", 7_000, "pi_1"))
    transfer = standin.session_for_url(
        (await post(svc, invoice, "pay", {"what": "amount", "amount": "30.00"}))
        .headers["Location"])
    await svc.deliver(*standin.pay(transfer["id"], payment_status="unpaid"))
    await svc.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "cash_1", "amount": 3_000, "method": "cash"}, expect=201)
    # Paid, and money still on its way: the page looks again until it arrives.
    body = (await page(svc, invoice, f"?session={transfer['id']}"))[1]
    assert "Receipt for invoice" in text_of(body) and REFRESH in body
    await svc.deliver(*standin.transfer(transfer["id"], succeeded=True))

    status, body = await page(svc, invoice, f"?session={transfer['id']}")
    said = text_of(body)
    assert status == 200 and "Receipt for invoice N-inv_1" in said and "Paid $100.00" in said
    assert "your payment of $30.00 was received" in said
    assert ("Nothing more was owed on this invoice: $30.00 of it went to your credit with "
            "settle.") in said
    # Newest first (a transfer is dated when it was made): the cash, the transfer (all of it
    # to credit, as it arrived last), the card.
    rows = said.split("To this invoice ", 1)[1]
    today = re.escape(formats.day(datetime.now(UTC)))
    assert re.match(rf"{today} Cash \$30\.00 \$30\.00 {today} Bank transfer \$30\.00 \$0\.00 "
                    rf"\$30\.00 of this went to your credit {today} Card \$70\.00 \$70\.00 "
                    r"Received \$130\.00 \$100\.00 ", rows), rows
    assert ("Of the $130.00 received, $100.00 counts as paid on this invoice and $30.00 "
            "went to your credit with settle") in said
    assert "Paid online" not in said and REFRESH not in body


async def test_an_old_links_thank_you_address_leads_to_the_invoice_page(
        paying: Service) -> None:
    svc = paying
    invoice = await svc.invoice("inv_1", 10_000)
    request = await svc.request("inv_1", 3_000)
    for url in (invoice["pay_url"], request["url"]):
        response = await svc.client.get(path_of(url) + "/done", allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == invoice["invoice_url"]


async def test_a_link_that_is_gone_links_the_invoice_page(paying: Service) -> None:
    svc = paying
    invoice = await svc.invoice("inv_1", 10_000)
    request = await svc.request("inv_1", 3_000)
    await svc.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    response = await svc.open_link(request["url"])
    assert response.status == 410
    body = await response.text()
    assert "cancelled" in body and f'href="{invoice["invoice_url"]}"' in body


# --- using credit -----------------------------------------------------------------------


async def test_use_my_credit_applies_it_and_shows_the_page_again(paying: Service) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_500, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_2", "amount": 900, "currency": "eur", "reason": "Goodwill"},
                   expect=201)
    response = await post(svc, invoice, "credit")
    assert response.status == 303
    location = response.headers["Location"]
    assert location == path_of(invoice["invoice_url"]) + "?done=credit"
    after = await svc.get_invoice("inv_1")
    assert (after["amount_credited"], after["amount_remaining"]) == (1_500, 8_500)
    assert await svc.balance() == {"eur": 900}  # another currency's credit stays
    said = text_of(await (await svc.client.get(location)).text())
    assert "Your credit was applied" in said and "Paid from your credit $15.00" in said
    assert "Use my credit" not in said

    # With no credit left: the reason, and 422.
    again = await post(svc, invoice, "credit")
    assert again.status == 422 and "You have no credit in USD" in text_of(await again.text())


async def test_use_my_credit_takes_only_what_remains_and_refuses_a_closed_invoice(
        paying: Service) -> None:
    svc = paying
    invoice = await svc.invoice("inv_1", 1_000, auto_apply_credit=False)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 5_000, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    assert (await post(svc, invoice, "credit")).status == 303
    assert (await svc.get_invoice("inv_1"))["status"] == "paid"
    assert await svc.balance() == {"usd": 4_000}
    refused = await post(svc, invoice, "credit")
    assert refused.status == 409 and "takes no more payments" in text_of(await refused.text())
    void = await svc.invoice("inv_2", 1_000, auto_apply_credit=False)
    await svc.call("POST", "/v1/invoices/inv_2/void")
    assert (await post(svc, void, "credit")).status == 409
    assert await svc.balance() == {"usd": 4_000}


async def test_use_my_credit_pressed_many_times_at_once_spends_it_once(paying: Service) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_500, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    answers = await asyncio.gather(*(post(svc, invoice, "credit") for _ in range(6)))
    assert sorted(a.status for a in answers) == [303] + [422] * 5
    after = await svc.get_invoice("inv_1")
    assert (after["amount_credited"], await svc.balance()) == (1_500, {})


# --- the PDF ---------------------------------------------------------------------------


def pdf_text(raw: bytes) -> str:
    reader = PdfReader(io.BytesIO(raw))
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages)).replace(
        "\xa0", " ")


async def test_the_pdf_is_the_same_invoice(paying: Service) -> None:
    svc = paying
    invoice = await partial_invoice(svc, number="INV-2030-7")
    await svc.deliver(session_completed("inv_1", 2_550, "pi_1"))
    response = await svc.client.get(path_of(invoice["invoice_url"]) + ".pdf")
    assert response.status == 200 and response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Content-Disposition"] == 'inline; filename="invoice-INV-2030-7.pdf"'
    text = pdf_text(await response.read())
    for expected in ("settle", "Invoice INV-2030-7", "Status: Partially paid", "Due Jan 31, 2030",
                     "Design work $70.00", "Hosting <b>& support</b> $30.00", "Total $100.00",
                     "Paid $25.50", "Remaining $74.50", "Card $25.50"):
        assert expected in text, (expected, text)

    await svc.deliver(session_completed("inv_1", 7_450, "pi_2"))
    text = pdf_text(await (await svc.client.get(path_of(invoice["invoice_url"]) + ".pdf")).read())
    assert "Receipt for invoice INV-2030-7" in text and "Status: Paid" in text
    assert "Remaining $0.00" in text


async def test_the_pdf_in_the_customers_locale_and_any_script(paying: Service) -> None:
    svc = paying
    await svc.call("PUT", "/v1/customers/cus_1",
                   {"email": "pay@example.com", "name": "Łukasz Żółć", "locale": "de-DE"})
    invoice = await svc.invoice("inv_1", 123_450, currency="eur", due_date="2030-01-31",
                                lines=[{"description": "Beratung – 山田", "amount": 123_450}])
    text = pdf_text(await (await svc.client.get(path_of(invoice["invoice_url"]) + ".pdf")).read())
    assert "For Łukasz Żółć" in text and "1.234,50 €" in text and "Due 31.01.2030" in text
    assert "Beratung – ??" in text  # a script the font lacks is marked, never dropped


# --- the customer's page -----------------------------------------------------------------


async def test_the_customer_page_lists_open_and_recently_paid_invoices_and_credit(
        paying: Service) -> None:
    svc = paying
    customer = await svc.call("GET", "/v1/customers/cus_1")
    await svc.invoice("inv_open", 10_000, due_date="2030-01-31")
    await svc.invoice("inv_part", 5_000)
    await svc.deliver(session_completed("inv_part", 1_000, "pi_1"))
    await svc.invoice("inv_paid", 2_000)
    await svc.deliver(session_completed("inv_paid", 2_000, "pi_2"))
    old = await svc.invoice("inv_old", 3_000)
    await svc.deliver(session_completed("inv_old", 3_000, "pi_3"))
    await svc.db.execute("update invoices set paid_at = now() - interval '13 months' "
                         "where id = 'inv_old'")
    await svc.invoice("inv_draft", 4_000, send=False)
    await svc.invoice("inv_void", 6_000)
    await svc.call("POST", "/v1/invoices/inv_void/void")
    await svc.customer("cus_2", "other@example.com")
    await svc.invoice("inv_other", 7_000, customer_id="cus_2")
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 1_500, "currency": "usd", "reason": "Goodwill"},
                   expect=201)
    await svc.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_2", "amount": 500, "currency": "jpy", "reason": "Goodwill"},
                   expect=201)

    response = await svc.client.get(path_of(customer["portal_url"]))
    assert response.status == 200
    body = await response.text()
    said = text_of(body)
    assert "Invoice N-inv_open Open Jan 31, 2030 $100.00 of $100.00" in said
    assert "Invoice N-inv_part Partially paid — $40.00 of $50.00" in said
    assert "Invoice N-inv_paid" in said and "$20.00" in said
    for absent in ("inv_old", "inv_draft", "inv_void", "inv_other"):
        assert absent not in said
    assert "$15.00 (USD)" in said and "¥500 (JPY)" in said
    for invoice_id in ("inv_open", "inv_part", "inv_paid"):
        url = (await svc.get_invoice(invoice_id))["invoice_url"]
        assert f'href="{url}"' in body


# --- the API's side of it ------------------------------------------------------------------


async def test_the_invoice_carries_its_page_lines_and_partial_terms(paying: Service) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    assert invoice["lines"] == [{"description": "Design work", "amount": 7_000},
                                {"description": "Hosting <b>& support</b>", "amount": 3_000}]
    assert (invoice["allow_partial"], invoice["min_partial_amount"]) == (True, 1_000)
    plain = await svc.invoice("inv_2", 500)
    assert (plain["lines"], plain["allow_partial"], plain["min_partial_amount"]) == ([], False, 0)
    assert plain["invoice_url"] != invoice["invoice_url"]


@pytest.mark.parametrize("change,code", [
    ({"lines": [{"description": "A", "amount": 6_000}]}, "lines_mismatch"),
    ({"lines": []}, "lines_mismatch"),
    ({"lines": [{"description": "", "amount": 10_000}]}, "input_invalid"),
    ({"lines": [{"description": "A", "amount": 100.5}]}, "lines_invalid"),
    ({"kind": "quote_deposit", "allow_partial": True}, "partial_not_allowed"),
    ({"min_partial_amount": -1}, "min_partial_amount_invalid"),
    ({"allow_partial": "yes"}, "allow_partial_invalid"),
])
async def test_invalid_invoice_terms_are_422(svc: Service, change: dict[str, Any],
                                             code: str) -> None:
    body = {"customer_id": "cus_1", "number": "INV-1", "currency": "usd", "total": 10_000}
    error = await svc.call("PUT", "/v1/invoices/inv_1", {**body, **change}, expect=422)
    assert error["error"]["code"] == code


async def test_partial_terms_may_change_while_the_invoice_is_open(svc: Service) -> None:
    body = {"customer_id": "cus_1", "number": "INV-1", "currency": "usd", "total": 10_000,
            "lines": [{"description": "A", "amount": 10_000}]}
    await svc.call("PUT", "/v1/invoices/inv_1", body, expect=201)
    await svc.call("POST", "/v1/invoices/inv_1/send")
    same = await svc.call("PUT", "/v1/invoices/inv_1", body, expect=200)
    assert same["allow_partial"] is False
    opened = await svc.call("PUT", "/v1/invoices/inv_1",
                            {**body, "allow_partial": True, "min_partial_amount": 2_000})
    assert (opened["allow_partial"], opened["min_partial_amount"]) == (True, 2_000)
    for other in ({"total": 12_000, "lines": [{"description": "A", "amount": 12_000}]},
                  {"number": "INV-2"}, {"lines": None}):
        conflict = await svc.call("PUT", "/v1/invoices/inv_1",
                                  {**body, "allow_partial": True, **other}, expect=409)
        assert conflict["error"]["code"] == "invoice_not_draft"
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1"))
    closed = await svc.call("PUT", "/v1/invoices/inv_1", {**body, "allow_partial": False},
                            expect=409)
    assert closed["error"]["code"] == "invoice_not_draft"


@pytest.mark.parametrize("locale", ["xx-YY", "en_US", "", "de-DE-u-co-phonebk", "e" * 40, 5])
async def test_a_locale_babel_does_not_know_is_422(svc: Service, locale: Any) -> None:
    error = await svc.call("PUT", "/v1/customers/cus_9",
                           {"email": "a@example.com", "locale": locale}, expect=422)
    assert error["error"]["code"] == "input_invalid"


# --- tokens never in logs ------------------------------------------------------------------


def test_the_web_process_keeps_no_access_log(monkeypatch: pytest.MonkeyPatch) -> None:
    """An access log line holds the path, and a page's path is its secret."""
    from aiohttp import web

    from core.settings import Settings
    from worker import cli

    seen: dict[str, Any] = {}
    monkeypatch.setattr(web, "run_app", lambda app, **options: seen.update(options))
    cli.cmd_web(Settings())
    assert seen["access_log"] is None


async def test_tokens_never_reach_the_logs(paying: Service, standin: StripeStandIn,
                                           caplog: pytest.LogCaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    svc = paying
    caplog.set_level(logging.DEBUG)  # every level, as much as the service's own logging lets by
    logs.quiet_libraries()
    invoice = await partial_invoice(svc)
    request = await svc.request("inv_1", 3_000)
    customer = await svc.call("GET", "/v1/customers/cus_1")
    tokens = {urlsplit(u).path.rsplit("/", 1)[1]
              for u in (invoice["invoice_url"], invoice["pay_url"], request["url"],
                        customer["portal_url"])}
    path = path_of(invoice["invoice_url"])
    await svc.client.get(path)
    await svc.client.get(path + ".pdf")
    await post(svc, invoice, "pay", {"what": "amount", "amount": "1"})
    await post(svc, invoice, "pay", {"what": "rest"})
    await post(svc, invoice, "credit")
    await post(svc, invoice, "credit", headers={})
    await svc.client.get(path_of(customer["portal_url"]))
    await svc.open_link(request["url"])

    # And when things go wrong: the database away, a bug, Stripe failing.
    async def away(*args: Any, **keywords: Any) -> Any:
        raise ConnectionRefusedError("database away")

    async def bug(*args: Any, **keywords: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr("reads.pages.invoice_page", away)
    assert (await svc.client.get(path)).status == 503
    monkeypatch.setattr("reads.pages.invoice_page", bug)
    response = await svc.client.get(path)
    assert response.status == 500 and "Something went wrong" in await response.text()
    monkeypatch.undo()
    standin.failures = [500]
    assert (await post(svc, invoice, "pay", {"what": "amount", "amount": "30"})).status == 503

    logged = caplog.text + "\n".join(repr(r.__dict__) for r in caplog.records)
    assert "request failed" in logged  # the failures were logged...
    for token in tokens:
        leaks = [f"{r.name}: {r.getMessage()[:200]}" for r in caplog.records
                 if token in repr(r.__dict__) or token in r.getMessage()]
        assert token not in logged, leaks  # ...but never a token


# --- mails link the page, in the customer's locale -------------------------------------------


async def test_mails_link_the_invoice_page_in_the_customers_locale(paying: Service,
                                                                   mail: Any) -> None:
    svc = paying
    await svc.call("PUT", "/v1/customers/cus_1",
                   {"email": "pay@example.com", "name": "Ada", "locale": "de-DE"})
    invoice = await svc.invoice("inv_1", 123_450, due_date="2030-01-31")
    await svc.request("inv_1", 3_000, note="<b>Bitte</b>")
    await svc.deliver(session_completed("inv_1", 3_000, "pi_1"))
    [asked] = mail.of_kind("payment_request")
    [received] = mail.of_kind("payment_received")
    assert asked.message["Subject"] == "Payment request: 30,00\xa0$ for invoice N-inv_1"
    text, html = asked.part("plain"), asked.part("html")
    assert "30,00\xa0$" in text and "due 31.01.2030" in text
    assert invoice["invoice_url"] in text and f'href="{invoice["invoice_url"]}"' in html
    assert "&lt;b&gt;Bitte&lt;/b&gt;" in html and "<b>Bitte</b>" in text
    assert "1.204,50\xa0$ remains" in received.part("plain")
    for message in mail.received:
        assert invoice["invoice_url"] in message.part("plain"), message.kind
