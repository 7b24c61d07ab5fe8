"""What the customer sees (issue 22, CONTRACT §6), in a real browser against the running
service and the sandbox processor: a receipt after an overpayment saying what went to
credit, a de-DE customer typing `1.234,56`, nothing more to pay while a payment is being
confirmed or on its way, and amounts, dates and invoice numbers kept whole at 360 px.

Each state is checked at 1280 and 360 px (nothing overflows sideways, axe-core finds
nothing serious or critical) and photographed under tests/screenshots/ (`customer-*`).
The fixtures and the person's steps are the ones of tests/test_browser.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By

from sandbox.stripe import StripeStandIn
from tests.conftest import wait_for
from tests.test_browser import (  # noqa: F401 (fixtures)
    CHROMEDRIVER,
    CHROMIUM,
    SHOTS,
    Live,
    Person,
    browser,
    downloads,
    in_browser,
    live,
    meanwhile,
    pytestmark,
)

NO_SCRIPT_REFRESH = '<meta http-equiv="refresh" content="5">'

# Every text node's pieces that must stay on one line: each amount (`$1,234.50`,
# `1.234,56 €`), each date (`Dec 4, 2026`, `31.12.2026`) and the invoice number. A Range
# over a piece that wraps has client rects on more than one line.
BROKEN_PIECES = """
var pattern = new RegExp(arguments[0], "g"), broken = [], seen = 0;
var walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (var node = walker.nextNode(); node; node = walker.nextNode()) {
  var match;
  pattern.lastIndex = 0;
  while ((match = pattern.exec(node.data)) !== null) {
    var range = document.createRange();
    range.setStart(node, match.index);
    range.setEnd(node, match.index + match[0].length);
    var tops = {};
    Array.prototype.forEach.call(range.getClientRects(), function (r) {
      if (r.width > 0) { tops[Math.round(r.top)] = true; }
    });
    seen += 1;
    if (Object.keys(tops).length > 1) { broken.push(match[0]); }
  }
}
return [seen, broken];
"""


def pieces(number: str) -> str:
    """A JavaScript pattern for the pieces of a page that must not break."""
    amounts = r"[$€£]\s?[0-9][0-9.,]*[0-9]|[0-9][0-9.,]*[0-9]\s€"
    dates = r"[A-Z][a-z]{2} [0-9]{1,2}, [0-9]{4}|[0-9]{2}\.[0-9]{2}\.[0-9]{4}"
    return f"{amounts}|{dates}|{re.escape(number)}"


def whole_at_360(person: Person, number: str, least: int = 3) -> list[str]:
    """At 360 px: at least `least` pieces there, and none broken (asserted)."""
    person.width(360)
    seen, broken = person.driver.execute_script(BROKEN_PIECES, pieces(number))
    # Under mobile emulation a page wider than the screen is zoomed out to fit, and
    # `innerWidth` grows with it: the layout viewport (`clientWidth`) is the screen's.
    wider = person.driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    person.width(1280)
    assert wider <= 0, f"the page is {wider} px wider than 360 px"
    assert seen >= least, f"only {seen} amounts and dates found"
    assert broken == [], f"broken over two lines at 360 px: {broken}"
    return broken  # type: ignore[no-any-return]


def invoice_page_url(person: Person) -> bool:
    return "/i/" in person.driver.current_url


async def test_a_receipt_after_an_overpayment_says_what_went_to_credit(
        live: Live, browser: Any, standin: StripeStandIn) -> None:
    """The demo's story: $70 by card, a $30 bank transfer on its way (nothing more offered
    to pay, the page refreshing), $30 in cash recorded by the merchant, then the transfer
    arrives: all of it goes to credit, the receipt says so and its rows add up."""
    svc = live
    await svc.call("PUT", "/v1/customers/cus_1", {"email": "ada@example.com",
                                                  "name": "Ada Lovelace", "locale": "en-US"},
                   expect=201)
    invoice = await svc.invoice("inv_over", 10_000, number="NW-2026-000123",
                                due_date="2026-12-31", allow_partial=True,
                                min_partial_amount=1_000, auto_apply_credit=False)
    person = Person(browser)

    def pay_by_card_then_start_a_transfer() -> str:
        person.open(invoice["invoice_url"])
        person.type_and_enter("amount", "70.00")
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        browser.find_element(By.ID, "pay-card").click()
        person.wait_for(lambda: invoice_page_url(person) and "was received" in person.text(),
                        timeout=40)
        person.type_and_enter("amount", "30")
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        browser.find_element(By.ID, "pay-bank").click()
        person.wait_for(lambda: "transfer is processing" in person.text())

        def on_its_way() -> bool:
            person.open(invoice["invoice_url"])
            return "On its way" in person.text()

        person.wait_for(on_its_way, timeout=40)
        person.check("customer-1-transfer-on-its-way")
        whole_at_360(person, "NW-2026-000123")
        assert NO_SCRIPT_REFRESH in browser.page_source
        assert browser.find_elements(By.ID, "pay-rest") == []
        assert browser.find_elements(By.ID, "pay-amount") == []
        return person.text()

    said = await in_browser(pay_by_card_then_start_a_transfer)
    assert "A payment of $30.00 is on its way and not counted yet: paying now as well would " \
           "pay twice" in said
    assert "Bank transfer On its way $30.00" in said and "Card $70.00 $70.00" in said
    assert "Pay the rest" not in said

    await svc.call("POST", "/v1/invoices/inv_over/payments",
                   {"id": "cash-1", "amount": 3_000, "method": "cash"}, expect=201)
    [session] = [s for s in standin.sessions.values() if s["payment_status"] == "unpaid"]

    def the_transfer_arrives() -> str:
        person.open(f"{standin.base}/checkout/{session['id']}")
        browser.find_element(By.ID, "transfer-succeeded").click()
        person.wait_for(lambda: invoice_page_url(person) and "was received" in person.text(),
                        timeout=40)
        person.check("customer-2-overpaid-receipt")
        whole_at_360(person, "NW-2026-000123")
        assert NO_SCRIPT_REFRESH not in browser.page_source
        return person.text()

    said = await in_browser(the_transfer_arrives)
    for expected in (
            "Receipt for invoice NW-2026-000123", "Paid $100.00", "Remaining $0.00",
            "Thank you: your payment of $30.00 was received. Nothing more was owed on this "
            "invoice: $30.00 of it went to your credit with Northwind Studio.",
            "Bank transfer $30.00 $0.00 $30.00 of this went to your credit",
            "Cash $30.00 $30.00", "Card $70.00 $70.00", "Received $130.00 $100.00",
            "Of the $130.00 received, $100.00 counts as paid on this invoice and $30.00 went "
            "to your credit with Northwind Studio."):
        assert expected in said, (expected, said)
    assert "Paid online" not in said
    paid = await svc.get_invoice("inv_over")
    assert (paid["amount_paid"], sum(p["applied"] for p in paid["payments"]),
            sum(p["credited"] for p in paid["payments"])) == (10_000, 10_000, 3_000)
    (SHOTS / "axe-findings-customer-1.json").write_text(json.dumps(person.findings, indent=1))


async def test_a_de_de_customer_types_an_amount_as_their_page_writes_it(
        live: Live, browser: Any, standin: StripeStandIn) -> None:
    svc = live
    await svc.call("PUT", "/v1/customers/cus_2", {"email": "grace@example.com",
                                                  "name": "Grace Hopper", "locale": "de-DE"},
                   expect=201)
    invoice = await svc.invoice("inv_de", 250_000, customer_id="cus_2", currency="eur",
                                number="RE-2026-000042", due_date="2026-12-31",
                                allow_partial=True, min_partial_amount=1_000)
    person = Person(browser)

    def refused_then_accepted() -> str:
        person.open(invoice["invoice_url"])
        said = person.text()
        assert "At least 10,00 €, at most 2.500,00 €. Type digits, like 2500,00." in said
        assert "Due 31.12.2026" in said
        person.check("customer-3-de-DE")
        whole_at_360(person, "RE-2026-000042")
        person.type_and_enter("amount", "1234.56")
        person.wait_for(lambda: "not how amounts are written" in person.text())
        person.check("customer-4-de-DE-refused")
        refused = person.text()
        person.type_and_enter("amount", "3.000")
        person.wait_for(lambda: "that remains" in person.text())
        refused += " | " + person.text()
        person.type_and_enter("amount", "1.234,56")
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        return refused

    refused = await in_browser(refused_then_accepted)
    assert "That is not how amounts are written here: type it like 2500,00." in refused
    assert "That is more than the 2.500,00 € that remains: you can pay at most 2.500,00 €." \
        in refused
    [session] = standin.sessions.values()
    assert (session["amount_total"], session["currency"]) == (123_456, "eur")
    assert (session["metadata"]["invoice_id"], session["metadata"]["amount_source"]) == (
        "inv_de", "customer")


async def test_nothing_more_to_pay_while_a_card_payment_is_being_confirmed(
        live: Live, browser: Any) -> None:
    svc = live
    await svc.customer()
    invoice = await svc.invoice("inv_wait", 10_000, number="NW-2026-000777",
                                due_date="2026-12-31", allow_partial=True)
    person = Person(browser)

    def being_confirmed() -> str:
        person.open(invoice["invoice_url"])
        person.press("pay-rest")
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        browser.find_element(By.ID, "pay-card").click()
        person.wait_for(lambda: invoice_page_url(person) and "being confirmed" in person.text())
        assert NO_SCRIPT_REFRESH in browser.page_source
        assert browser.find_elements(By.ID, "pay-rest") == []
        assert browser.find_elements(By.ID, "pay-amount") == []
        person.check("customer-5-being-confirmed")
        return person.text()

    svc.hold_the_worker()
    said = await in_browser(being_confirmed)
    assert "Your payment of $100.00 is being confirmed" in said
    assert "Your payment is being confirmed: paying now as well would pay twice" in said
    assert "Pay the rest" not in said and "Pay this amount" not in said

    def receipt() -> str:
        person.wait_for(lambda: "Receipt for invoice" in person.text(), timeout=40)
        assert NO_SCRIPT_REFRESH not in browser.page_source
        return person.text()

    said = await meanwhile(receipt, svc.release_the_worker)
    assert "Card $100.00 $100.00" in said

    async def paid() -> bool:
        return bool((await svc.get_invoice("inv_wait"))["status"] == "paid")

    assert await wait_for(paid, timeout=30)
    (SHOTS / "axe-findings-customer-2.json").write_text(json.dumps(person.findings, indent=1))


async def test_the_customer_page_keeps_amounts_and_dates_whole_at_360_px(
        live: Live, browser: Any) -> None:
    svc = live
    await svc.call("PUT", "/v1/customers/cus_3", {"email": "kay@example.com",
                                                  "name": "Kay Nakamura", "locale": "de-DE"},
                   expect=201)
    for number, total in (("RE-2026-000101", 123_456_789), ("RE-2026-000102", 99_999)):
        await svc.invoice(f"inv_{number[-3:]}", total, customer_id="cus_3", currency="eur",
                          number=number, due_date="2026-12-31")
    customer = await svc.call("GET", "/v1/customers/cus_3")
    person = Person(browser)

    def look() -> str:
        person.open(customer["portal_url"])
        person.check("customer-6-customer-page-de-DE")
        whole_at_360(person, "RE-2026-000101")
        return person.text()

    said = await in_browser(look)
    assert "1.234.567,89 €" in said and "31.12.2026" in said


@pytest.fixture
def browser_without_script(downloads: Path) -> Iterator[Any]:
    """Chromium as in tests/test_browser.py, with JavaScript turned off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--window-size=1280,900"):
        options.add_argument(flag)
    options.add_experimental_option("prefs", {
        "profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER),
                              options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


async def test_without_javascript_the_page_looks_again_until_the_transfer_arrives(
        live: Live, browser_without_script: Any, standin: StripeStandIn) -> None:
    """The <noscript> meta refresh: the page on screen, untouched, turns into the receipt
    once the bank transfer on its way arrives."""
    svc = live
    browser = browser_without_script
    await svc.customer()
    invoice = await svc.invoice("inv_noscript", 5_000, number="NS-1")
    person = Person(browser)

    def start_a_transfer() -> str:
        person.open(invoice["invoice_url"])
        browser.find_element(By.ID, "pay-rest").click()
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        browser.find_element(By.ID, "pay-bank").click()
        person.wait_for(lambda: "transfer is processing" in person.text())

        def on_its_way() -> bool:
            person.open(invoice["invoice_url"])
            return "On its way" in person.text()

        person.wait_for(on_its_way, timeout=40)
        return person.text()

    said = await in_browser(start_a_transfer)
    assert "A payment of $50.00 is on its way" in said and "Pay the rest" not in said
    [session] = standin.sessions.values()
    await standin.post_events(standin.transfer(session["id"], succeeded=True))

    def looked_again() -> str:
        # No click, no reload from here: the page refreshes itself.
        person.wait_for(lambda: "Receipt for invoice NS-1" in person.text(), timeout=40)
        return person.text()

    said = await in_browser(looked_again)
    assert "Bank transfer $50.00 $50.00" in said and "On its way" not in said
