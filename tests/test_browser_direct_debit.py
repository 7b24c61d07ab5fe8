"""An invoice in `gbp` paid part by card and part by Direct Debit, in a real browser
(issue 24, "Done when"; CONTRACT §3a, §6 "Choosing how to pay").

settle runs as a platform runs it (`settle web` and `settle worker`), with Stripe's
stand-in (card) and GoCardless's (Direct Debit) each posting its signed webhooks to it.
The customer opens the invoice page, pays another amount by Card at Stripe's stand-in
checkout, comes back to it received, pays the rest by Direct Debit (GoCardless's page:
they set up the Direct Debit), comes back to it on its way; the bank moves the payment on
(the stand-in's payments page: submitted, then confirmed) and the page is the receipt.
The API's books (`amount_paid`, `amount_remaining`, `status`, each payment) are read at
every step. Each of settle's pages is checked as in tests/test_browser_customer.py (1280
and 360 px, axe-core, amounts kept whole) and photographed under tests/screenshots/
(`direct-debit-*`); the stand-in's pages are photographed too.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from selenium.webdriver.common.by import By

from core.settings import Settings
from sandbox.events import SECRET as STRIPE_SECRET
from sandbox.gocardless import GoCardlessStandIn
from sandbox.stripe import StripeStandIn
from tests.conftest import (
    ROOT, SETTLE, free_port, process_env, replace, wait_for, wait_until_answers, with_stripe)
from tests.gocardless_service import gcstandin
from tests.test_browser import (  # noqa: F401 (fixtures)
    SHOTS,
    Live,
    Person,
    browser,
    downloads,
    in_browser,
    pytestmark,
)
from tests.test_browser_customer import whole_at_360

__all__ = ["gcstandin"]  # a fixture

NUMBER = "NW-2026-000789"


@pytest.fixture
async def both(settings: Settings, db: asyncpg.Pool, standin: StripeStandIn,
               gcstandin: GoCardlessStandIn) -> AsyncIterator[Live]:
    """`settle web` and `settle worker` with Stripe's and GoCardless's stand-ins
    configured, each posting its signed webhooks to the web process."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    configured = replace(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                         public_url=base, merchant_name="Northwind Studio")
    standin.webhook_secret, standin.webhook_url = STRIPE_SECRET, f"{base}/webhooks/stripe"
    gcstandin.webhook_url = f"{base}/webhooks/gocardless"
    environment = process_env(
        configured, PORT=str(port), MERCHANT_NAME="Northwind Studio",
        GOCARDLESS_ACCESS_TOKEN=gcstandin.access_token, GOCARDLESS_API_BASE=gcstandin.base,
        GOCARDLESS_WEBHOOK_SECRETS=gcstandin.webhook_secret)
    processes = [subprocess.Popen([SETTLE, command], env=environment, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for command in ("web", "worker")]
    try:
        async with aiohttp.ClientSession(base) as http:
            await wait_until_answers(http, "/healthz")
            yield Live(http, configured, db, processes[1])  # type: ignore[arg-type]
    finally:
        processes[1].send_signal(signal.SIGCONT)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)


def books(invoice: dict[str, Any]) -> tuple[int, int, str]:
    return invoice["amount_paid"], invoice["amount_remaining"], invoice["status"]


def payments(invoice: dict[str, Any]) -> list[tuple[str, str | None, int, str]]:
    return sorted((p["source"], p["method"], p["amount"], p["status"])
                  for p in invoice["payments"])


async def test_an_invoice_is_paid_part_by_card_and_part_by_direct_debit(
        both: Live, browser: Any, standin: StripeStandIn,
        gcstandin: GoCardlessStandIn) -> None:
    svc = both
    await svc.call("PUT", "/v1/customers/cus_1", {"email": "ada@example.com",
                                                  "name": "Ada Lovelace", "locale": "en-GB"},
                   expect=201)
    invoice = await svc.invoice("inv_dd", 25_000, currency="gbp", number=NUMBER,
                                due_date="2026-12-31", allow_partial=True,
                                min_partial_amount=1_000)
    assert books(invoice) == (0, 25_000, "sent")
    person = Person(browser)

    def first_look() -> str:
        person.open(invoice["invoice_url"])
        person.check("direct-debit-1-two-ways")
        whole_at_360(person, NUMBER)
        return person.text()

    said = await in_browser(first_look)
    assert "Pay the rest: £250.00 Card Direct Debit" in said
    assert "Pay this amount by Card Direct Debit" in said

    def pay_part_by_card() -> str:
        person.type_and_enter("amount", "100.00")  # Enter: the form's first way, Card
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        person.shoot("direct-debit-2-card-checkout")
        # The checkout names the invoice as the customer knows it: by its number.
        assert f"Pay £100.00 Invoice {NUMBER}" in person.text()
        person.click("pay-card")
        person.wait_for(lambda: "/i/" in browser.current_url and "was received" in person.text(),
                        timeout=40)
        person.check("direct-debit-3-card-received")
        whole_at_360(person, NUMBER)
        return person.text()

    said = await in_browser(pay_part_by_card)
    assert "Thank you: your payment of £100.00 was received." in said
    after_card = await svc.get_invoice("inv_dd")
    assert books(after_card) == (10_000, 15_000, "partially_paid")
    assert payments(after_card) == [("stripe", "card", 10_000, "succeeded")]

    def pay_the_rest_by_direct_debit() -> dict[str, str]:
        seen = {"before": person.text()}
        person.press("pay-rest-direct_debit")
        person.wait_for(lambda: "by Direct Debit" in browser.title)
        seen["gocardless"] = person.text()
        person.shoot("direct-debit-4-gocardless-setup")
        person.click("set-up")
        person.wait_for(lambda: "/i/" in browser.current_url)

        def on_its_way() -> bool:
            # The page looks again only every few minutes for a Direct Debit: look now.
            if "is on its way" in person.text():
                return True
            person.open(browser.current_url)
            return False

        person.wait_for(on_its_way, timeout=40)
        person.check("direct-debit-5-on-its-way")
        whole_at_360(person, NUMBER)
        seen["back"] = person.text()
        seen["buttons"] = str(len(browser.find_elements(By.CSS_SELECTOR, "button[name=way]")))
        return seen

    seen = await in_browser(pay_the_rest_by_direct_debit)
    assert "Pay the rest: £150.00 Card Direct Debit" in seen["before"]
    assert "Pay £150.00 by Direct Debit" in seen["gocardless"]
    assert f"Invoice {NUMBER}" in seen["gocardless"]
    assert "Your Direct Debit payment of £150.00 is on its way; it usually takes 3–5 working " \
           "days to confirm." in seen["back"]
    # Said once, not again in the Pay box: there, only that nothing more is to be paid.
    assert seen["back"].count("3–5 working days") == 1
    assert "Nothing more to pay while your Direct Debit is on its way" in seen["back"]
    assert seen["buttons"] == "0"  # nothing more offered to pay for that money
    on_its_way = await svc.get_invoice("inv_dd")
    assert books(on_its_way) == (10_000, 15_000, "partially_paid")
    assert payments(on_its_way) == [("gocardless", "direct_debit", 15_000, "processing"),
                                    ("stripe", "card", 10_000, "succeeded")]
    [payment_id] = [p["id"] for p in on_its_way["payments"] if p["source"] == "gocardless"]
    [billing] = gcstandin.billing_requests.values()
    assert billing["payment_request"]["metadata"] == {"invoice_id": "inv_dd"}

    def the_bank_submits_it() -> None:
        person.open(f"{gcstandin.base}/_sandbox")
        person.shoot("direct-debit-6-standin-payments")
        person.click(f"{payment_id}-submitted")

    await in_browser(the_bank_submits_it)

    async def submitted() -> bool:
        events = await svc.db.fetch(
            "select status from events where processor = 'gocardless' "
            "and type = 'payments.submitted'")
        return [e["status"] for e in events] == ["processed"]

    await wait_for(submitted, timeout=30, interval=0.1)
    still = await svc.get_invoice("inv_dd")
    assert books(still) == (10_000, 15_000, "partially_paid")
    assert payments(still)[0] == ("gocardless", "direct_debit", 15_000, "processing")

    def the_bank_confirms_it() -> str:
        person.click(f"{payment_id}-confirmed")
        person.shoot("direct-debit-7-standin-confirmed")

        def paid() -> bool:
            person.open(invoice["invoice_url"])
            return "Paid in full" in person.text()

        person.wait_for(paid, timeout=40)
        person.check("direct-debit-8-paid")
        whole_at_360(person, NUMBER)
        return person.text()

    said = await in_browser(the_bank_confirms_it)
    assert "Direct Debit" in said and "Card" in said
    paid = await svc.get_invoice("inv_dd")
    assert books(paid) == (25_000, 0, "paid")
    assert payments(paid) == [("gocardless", "direct_debit", 15_000, "succeeded"),
                              ("stripe", "card", 10_000, "succeeded")]
    (SHOTS / "axe-findings-direct-debit.json").write_text(json.dumps(person.findings, indent=1))
