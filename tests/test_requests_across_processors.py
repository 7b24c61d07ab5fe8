"""Requests and invoices across processors (CONTRACT §5, §6): a payment request is
`processor_not_configured` only when no configured processor takes the invoice's
currency; an amount (or a total) is refused only when every processor that takes the
currency refuses it, with the contract's code and each one's reason; and the pay link
then offers only the ways that would charge its amount."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from core.settings import Settings
from sandbox.stripe import StripeStandIn
from tests.conftest import FAST_RETRIES, replace, with_stripe
from tests.fake_processor import FakeStore, registry
from tests.gocardless_service import GoCardlessService, gconly, gcstandin, gcsvc
from tests.test_second_processor import FakeService
from worker.app import create_app

__all__ = ["gconly", "gcstandin", "gcsvc"]  # fixtures


async def test_with_only_gocardless_a_gbp_request_is_made_and_its_link_is_a_direct_debit(
        gconly: GoCardlessService) -> None:
    await gconly.gbp_invoice()
    request = await gconly.request("inv_1", 3_000)
    assert request["status"] == "active"
    response = await gconly.open_link(request["url"])
    assert response.status == 303, await response.text()
    assert response.headers["Location"].startswith(f"{gconly.gc.base}/flow/")
    [made] = gconly.gc.calls_to("POST", "/billing_requests")
    assert made.body["billing_requests"]["payment_request"]["amount"] == 3_000
    assert (await gconly.get_invoice("inv_1"))["pay_url"] is not None


async def test_with_only_gocardless_a_currency_it_does_not_collect_is_not_configured(
        gconly: GoCardlessService) -> None:
    await gconly.invoice("inv_1", 10_000, currency="chf")
    refused = await gconly.request("inv_1", 3_000, expect=409)
    assert refused["error"]["code"] == "processor_not_configured"
    assert "CHF" in refused["error"]["message"]
    assert await gconly.db.fetchval("select count(*) from payment_requests") == 0
    assert await gconly.db.fetchval("select count(*) from outbox where kind = 'email' "
                                    "and payload->>'kind' = 'payment_request'") == 0


async def test_with_only_gocardless_its_own_rules_refuse_an_amount(
        gconly: GoCardlessService) -> None:
    """£0.50 is less than a Direct Debit collects: GoCardless's reason, not Stripe's."""
    await gconly.gbp_invoice()
    refused = await gconly.request("inv_1", 50, expect=422)
    assert refused["error"] == {"code": "amount_invalid",
                                "message": "GoCardless collects at least 1.00 GBP"}


async def test_an_amount_one_processor_refuses_goes_by_the_one_that_takes_it(
        gcsvc: GoCardlessService, standin: StripeStandIn) -> None:
    """Both take GBP. £0.50 is too little for a Direct Debit and enough for a card: the
    request is made and its link goes straight to Card, with no choice to make."""
    await gcsvc.gbp_invoice()
    request = await gcsvc.request("inv_1", 50)
    response = await gcsvc.open_link(request["url"])
    assert response.status == 303, await response.text()
    session = standin.session_for_url(response.headers["Location"])
    assert session["amount_total"] == 50
    assert gcsvc.gc.calls_to("POST", "/billing_requests") == []


async def test_an_amount_only_gocardless_collects_goes_by_direct_debit(
        gcsvc: GoCardlessService, standin: StripeStandIn) -> None:
    """$1,000,000.00 is more than Stripe charges at once; GoCardless sets no largest USD
    debit: the request is made, and its link goes straight to Direct Debit."""
    await gcsvc.invoice("inv_1", 200_000_000, currency="usd", allow_partial=True)
    request = await gcsvc.request("inv_1", 100_000_000)
    response = await gcsvc.open_link(request["url"])
    assert response.status == 303, await response.text()
    assert response.headers["Location"].startswith(f"{gcsvc.gc.base}/flow/")
    assert standin.calls_to("/v1/checkout/sessions") == []
    # Posted by hand naming Card (a way not offered for this amount): the choice again.
    again = await gcsvc.client.post(urlsplit(request["url"]).path, data={"way": "card"},
                                    headers={"Sec-Fetch-Site": "same-origin"},
                                    allow_redirects=False)
    assert again.status == 422
    page = await again.text()
    assert 'value="direct_debit"' in page and 'value="card"' not in page


async def test_an_amount_every_processor_refuses_is_refused_with_each_reason(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    refused = await gcsvc.request("inv_1", 20, expect=422)
    assert refused["error"] == {
        "code": "amount_invalid",
        "message": "Stripe charges at least 0.30 GBP; GoCardless collects at least 1.00 GBP"}
    assert await gcsvc.db.fetchval("select count(*) from payment_requests") == 0


async def test_an_amount_both_take_is_still_a_choice(gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    request = await gcsvc.request("inv_1", 3_000)
    response = await gcsvc.open_link(request["url"])
    assert response.status == 200
    page = await response.text()
    assert 'value="card"' in page and 'value="direct_debit"' in page


@pytest.fixture
async def kwd_both(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool,
                   standin: StripeStandIn) -> FakeService:
    """Stripe (which moves KWD only in steps of 10 fils) and a processor that takes KWD
    in any step (the fake of tests/fake_processor.py)."""
    configured = replace(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                         public_url="http://settle.test", retry_base_seconds=FAST_RETRIES)
    client: TestClient[Any, Any] = await aiohttp_client(
        create_app(configured, registry(FakeStore(), currencies=frozenset({"kwd"}))))
    service = FakeService(client, configured, db)
    await service.customer()
    return service


async def test_a_total_one_processor_that_takes_the_currency_can_move_is_an_invoice(
        kwd_both: FakeService) -> None:
    """1.005 KWD: Stripe cannot move it, the other processor can."""
    invoice = await kwd_both.invoice("inv_1", 1_005, currency="kwd")
    assert (invoice["total"], invoice["status"]) == (1_005, "sent")


async def test_a_total_no_processor_that_takes_the_currency_can_move_is_refused(
        gcsvc: GoCardlessService) -> None:
    """GoCardless does not collect KWD, so Stripe's step alone holds the total."""
    refused = await gcsvc.call("PUT", "/v1/invoices/inv_1", {
        "customer_id": "cus_1", "number": "N-1", "currency": "kwd", "total": 1_005},
        expect=422)
    assert refused["error"] == {"code": "total_invalid",
                                "message": "Stripe charges KWD only in multiples of 10 "
                                           "(0.010 KWD)"}
