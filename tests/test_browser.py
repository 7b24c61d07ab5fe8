"""A person pays in a real browser: headless Chromium opens a pay link, pays on the
sandbox checkout page, and the invoice is paid and the mail sent (issue: first ten minutes).
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import asyncpg
import pytest

from sandbox.events import SECRET
from sandbox.stripe import StripeStandIn
from tests.conftest import free_port, replace, run_burst
from tests.service import Service
from worker.app import create_app
from core.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Chromium is not installed (make test installs it where it can: "
           "apt-get install chromium chromium-driver)")


@pytest.fixture
def browser() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=DriverService(executable_path=CHROMEDRIVER),
                              options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


async def test_a_customer_pays_in_the_browser(aiohttp_client: Any, aiohttp_server: Any,
                                              settings: Settings, db: asyncpg.Pool, mail: Any,
                                              standin: StripeStandIn, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sandbox = standin
    sandbox.webhook_secret = SECRET
    # settle must know its own address (the checkout's success_url), so pick it first.
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    configured = replace(settings, stripe_api_key=sandbox.api_key, stripe_api_base=sandbox.base,
                         public_url=base)
    server = await aiohttp_server(create_app(configured), port=port)
    sandbox.webhook_url = f"{base}/webhooks/stripe"
    svc = Service(await aiohttp_client(server), configured, db)
    await svc.customer()
    invoice = await svc.invoice("inv_browser", 4_200)

    def pay() -> str:
        browser.get(invoice["pay_url"])
        assert "Pay $42.00" in browser.page_source
        browser.find_element(By.ID, "pay-card").click()
        # The click posts the form; wait for the redirect to settle's thank-you page.
        WebDriverWait(browser, 30).until(lambda driver: "/done" in driver.current_url)
        return str(browser.page_source)

    page = await asyncio.to_thread(pay)
    assert "Thank you" in page
    await run_burst(configured)
    paid = await svc.get_invoice("inv_browser")
    assert (paid["status"], paid["amount_paid"]) == ("paid", 4_200)
    [notice] = mail.of_kind("invoice_paid")
    assert "$42.00" in notice.part("plain")
