"""Choosing how to pay in a real browser (CONTRACT §6 "Choosing how to pay"): a pay link with
two processors able to take its currency is a page with a Card and a Direct Debit button;
each leads, through a 303 the page's Content-Security-Policy must allow, to that
processor's own page. The invoice page offers the same choice, and says plainly when a
Direct Debit is on its way.

settle runs in this process (the fake processor of tests/fake_processor.py can only be
registered here), listening on a real port beside the Stripe stand-in and a page standing
for the fake's own checkout. Each page is checked as in tests/test_browser_customer.py: at
1280 and 360 px nothing overflows, axe-core finds nothing serious or critical, and it is
photographed under tests/screenshots/ (`choosing-*`).
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from selenium.webdriver.common.by import By

from core.settings import Settings
from sandbox.stripe import StripeStandIn
from tests.conftest import free_port, replace, with_stripe
from tests.fake_processor import FakeStore, notice, registry
from tests.test_browser import (  # noqa: F401 (fixtures)
    SHOTS,
    Person,
    browser,
    downloads,
    in_browser,
    pytestmark,
)
from tests.test_browser_customer import whole_at_360
from tests.test_second_processor import FakeService
from worker.app import create_app

CURRENCIES = frozenset({"gbp", "usd"})


def fake_checkout_page() -> web.Application:
    """What the fake's checkout address shows a browser: a page that names its session."""
    async def page(request: web.Request) -> web.Response:
        session = html.escape(request.match_info["id"])
        return web.Response(content_type="text/html", text=(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Fake Direct Debit</title></head><body><main>"
            f"<h1>Set up your Direct Debit</h1><p id='session'>{session}</p>"
            "</main></body></html>"))

    app = web.Application()
    app.router.add_get("/pay/{id}", page)
    return app


@pytest.fixture
async def in_process(aiohttp_server: Any, settings: Settings, db: asyncpg.Pool,
                     standin: StripeStandIn) -> AsyncIterator[FakeService]:
    """settle with Stripe (card) and the fake (Direct Debit in gbp and usd), on a real
    port; the fake's checkout pages served by a server of their own."""
    checkout = await aiohttp_server(fake_checkout_page())
    origin = str(checkout.make_url("")).rstrip("/")
    store = FakeStore()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    configured = replace(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                         public_url=base, merchant_name="Northwind Studio")
    await aiohttp_server(create_app(configured, registry(store, currencies=CURRENCIES,
                                                         origin=origin)), port=port)
    async with aiohttp.ClientSession(base) as http:
        service = FakeService(http, configured, db)  # type: ignore[arg-type]
        service.store, service.currencies = store, CURRENCIES
        service.fake_origin = origin  # type: ignore[attr-defined]
        await service.call("PUT", "/v1/customers/cus_1", {
            "email": "ada@example.com", "name": "Ada Lovelace", "locale": "en-GB"}, expect=201)
        yield service


async def test_a_customer_chooses_card_or_direct_debit(in_process: FakeService, browser: Any,
                                                       standin: StripeStandIn) -> None:
    svc = in_process
    invoice = await svc.invoice("inv_gb", 12_345, currency="gbp", number="NW-2026-000456",
                                due_date="2026-12-31", allow_partial=True,
                                min_partial_amount=1_000)
    request = await svc.request("inv_gb", 4_500, note="First half of the design work")
    person = Person(browser)

    def choose_card_then_direct_debit() -> dict[str, str]:
        seen = {}
        person.open(request["url"])
        seen["choice"] = person.text()
        person.check("choosing-1-two-ways")
        whole_at_360(person, "NW-2026-000456", least=2)  # the amount and the number
        person.press("way-card")
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        seen["card"] = browser.current_url
        person.open(request["url"])
        person.press("way-direct_debit")
        person.wait_for(lambda: "Fake Direct Debit" in browser.title)
        seen["debit"] = browser.current_url
        seen["debit-session"] = browser.find_element(By.ID, "session").text
        person.open(invoice["invoice_url"])
        seen["invoice"] = person.text()
        person.check("choosing-2-invoice-page-two-ways")
        whole_at_360(person, "NW-2026-000456")
        person.type_and_enter("amount", "20.00")  # Enter: the form's first way, Card
        person.wait_for(lambda: "Sandbox checkout" in browser.title)
        return seen

    seen = await in_browser(choose_card_then_direct_debit)
    assert "Pay £45.00" in seen["choice"] and "NW-2026-000456" in seen["choice"]
    assert "First half of the design work" in seen["choice"]
    assert "Card Direct Debit" in seen["choice"]
    assert seen["card"].startswith(f"{standin.base}/checkout/")
    [debit_session] = svc.store.sessions
    assert seen["debit"] == f"{svc.fake_origin}/pay/{debit_session}"  # type: ignore[attr-defined]
    assert seen["debit-session"] == debit_session
    assert "Pay the rest: £123.45 Card Direct Debit" in seen["invoice"]
    assert "Pay this amount by Card Direct Debit" in seen["invoice"]
    rows = await svc.db.fetch(
        "select processor, amount, amount_source from checkout_sessions order by created_at")
    assert [tuple(r) for r in rows] == [
        ("stripe", 4_500, "link"), ("fake", 4_500, "link"), ("stripe", 2_000, "customer")]

    # The customer set up the Direct Debit: the fake says the payment is submitted.
    svc.store.payment("FP1", "inv_gb", 4_500, "submitted", currency="GBP")
    await svc.post(notice("FEV1", "payments", "submitted", payment="FP1"))
    await svc.settle()

    def on_its_way() -> str:
        # How long confirm.js waits before it looks again: every setTimeout it asks for is
        # noted (a script of the browser's own, before the page's; nothing waits for it).
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
            "window.__delays = []; var set = window.setTimeout;"
            "window.setTimeout = function (f, ms) { window.__delays.push(ms);"
            " return set.apply(window, arguments); };")})
        person.open(invoice["invoice_url"])
        person.wait_for(lambda: browser.execute_script("return window.__delays.length") > 0)
        # Five minutes between looks: a Direct Debit takes days, not seconds.
        assert browser.execute_script("return window.__delays") == [300000]
        person.check("choosing-3-direct-debit-on-its-way")
        whole_at_360(person, "NW-2026-000456")
        assert browser.find_elements(By.CSS_SELECTOR, "button[name=way]") == []
        assert 'http-equiv="refresh"' not in browser.page_source
        return person.text()

    said = await in_browser(on_its_way)
    assert "Your Direct Debit payment of £45.00 is on its way; it usually takes 3–5 working " \
           "days to confirm." in said
    assert "Direct Debit On its way £45.00" in said
    (SHOTS / "axe-findings-choosing.json").write_text(json.dumps(person.findings, indent=1))
