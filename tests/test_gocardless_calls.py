"""settle's calls to GoCardless, through the real `gocardless-pro` client against the
stand-in: checkouts (a billing request and its flow, the customer's page), their
cancellation once the invoice is paid, refunds under their Idempotency-Key, reconcile,
no call while a transaction is open, a GoCardless that hangs or refuses, the executor's
bound, and the settings."""

from __future__ import annotations

import asyncio
import subprocess
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import pytest
from arq import Retry

from core.db import create_pool
from core.errors import PermanentError, Unavailable
from core.services import WorkerContext
from core.settings import SettingsError
from handlers.keys import SERVICES
from jobs.events import process_event
from processors.gocardless.client import GoCardlessProcessor
from processors.gocardless.settings import LIVE_API, GoCardlessSettings
from sandbox.gocardless import Call, GoCardlessStandIn, gocardless_event
from tests.conftest import ROOT, SETTLE
from tests.gocardless_service import GoCardlessService, gcstandin, gcsvc
from tests.test_operations import reconcile
from worker.services import event_handlers, make_processors, make_queue, make_services

__all__ = ["gcstandin", "gcsvc"]  # fixtures


# --- checkout -------------------------------------------------------------------------------


async def test_a_checkout_is_a_billing_request_and_its_flow_back_to_the_invoice_page(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    [made] = gcsvc.gc.calls_to("POST", "/billing_requests")
    params = made.body["billing_requests"]
    assert params["payment_request"] == {
        "amount": 10_000, "currency": "GBP", "description": "Invoice N-inv_1",
        "metadata": {"invoice_id": "inv_1"}}
    assert params["mandate_request"] == {"currency": "GBP"}
    assert made.idempotency_key is not None and made.idempotency_key.startswith("checkout:inv_1:")
    [flow] = gcsvc.gc.calls_to("POST", "/billing_request_flows")
    page = f"http://settle.test/i/{(await gcsvc.db.fetchval('select view_token from invoices'))}"
    body = flow.body["billing_request_flows"]
    assert (body["redirect_uri"], body["exit_uri"], body["links"]) == (
        f"{page}?session={session_id}", page, {"billing_request": session_id})
    row = await gcsvc.db.fetchrow("select processor, status, url, expires_at from checkout_sessions")
    assert (row["processor"], row["status"]) == ("gocardless", "open")
    assert row["url"].startswith(f"{gcsvc.gc.base}/flow/BRF") and row["expires_at"] is not None
    # The same link opened again reuses the open billing request.
    assert await gcsvc.open_checkout() == session_id
    assert len(gcsvc.gc.calls_to("POST", "/billing_requests")) == 1


async def test_a_repeated_idempotency_key_is_the_billing_request_it_made(
        gcsvc: GoCardlessService) -> None:
    from core.processor import SessionSpec

    processor = GoCardlessProcessor(access_token=gcsvc.gc.access_token, api_base=gcsvc.gc.base)
    spec = SessionSpec("inv_1", "N-1", "req_1", 2_000, "eur", "a@example.com",
                       processor.return_url("http://settle.test/i/tok"), "http://settle.test/i/tok",
                       "checkout:inv_1:req_1:2000:0")
    first = await processor.create_checkout(spec)
    again = await processor.create_checkout(spec)
    assert first.id == again.id and first.url != again.url  # one request, a flow each
    assert [c.idempotency_key for c in gcsvc.gc.calls_to("POST", "/billing_requests")] == [
        spec.idempotency_key] * 2
    assert gcsvc.gc.billing_requests[first.id]["payment_request"]["metadata"] == {
        "invoice_id": "inv_1", "payment_request_id": "req_1"}
    await processor.close()


async def test_the_customer_sets_up_the_direct_debit_and_the_invoice_is_paid_days_later(
        gcsvc: GoCardlessService) -> None:
    """The stand-in's page fulfils the billing request and posts GoCardless's batch to
    settle's webhook; its JSON moves post the payment's news the same way."""
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    gcsvc.gc.webhook_url = str(gcsvc.client.make_url("/webhooks/gocardless"))
    url = await gcsvc.db.fetchval("select url from checkout_sessions")
    async with aiohttp.ClientSession() as browser:
        async with browser.get(url) as page:
            assert page.status == 200
            assert "Set up the Direct Debit" in await page.text()
        async with browser.post(f"{url}/setup", allow_redirects=False) as done:
            assert done.status == 303
            back = done.headers["Location"]
    assert back.endswith(f"?session={session_id}")
    assert [r["type"] for r in await gcsvc.events()] == [
        "billing_requests.fulfilled", "mandates.created", "payments.created"]
    await gcsvc.settle()
    payment_id = gcsvc.gc.billing_requests[session_id]["links"]["payment_request_payment"]
    assert (await gcsvc.payment_view(payment_id))["status"] == "processing"
    returned = await gcsvc.client.get(urlsplit(back).path + "?" + urlsplit(back).query)
    assert "on its way" in await returned.text()
    async with aiohttp.ClientSession() as http:
        for action in ("submitted", "confirmed"):
            async with http.post(f"{gcsvc.gc.base}/_sandbox/payments/{payment_id}/{action}") as r:
                assert (await r.json())["posted"] is True
    await gcsvc.settle()
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10_000)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gcsvc.gc.base}/_sandbox") as listing:
            assert payment_id in await listing.text()


async def test_a_paid_invoice_cancels_its_open_billing_requests(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    await gcsvc.call("POST", "/v1/invoices/inv_1/payments",
                     {"id": "cheque-1", "amount": 10_000, "method": "check"}, expect=201)
    await gcsvc.settle()
    assert gcsvc.gc.billing_requests[session_id]["status"] == "cancelled"
    assert len(gcsvc.gc.calls_to("POST", f"/billing_requests/{session_id}/actions/cancel")) == 1
    row = await gcsvc.db.fetchrow("select status, processor from checkout_sessions")
    assert (row["status"], row["processor"]) == ("expired", "gocardless")
    owed = await gcsvc.db.fetchrow("select payload, status from outbox where kind = 'expire_checkout'")
    assert (owed["payload"]["processor"], owed["status"]) == ("gocardless", "done")


async def test_a_billing_request_no_longer_open_says_what_it_is_when_cancelled(
        gcsvc: GoCardlessService) -> None:
    """The customer finished GoCardless's pages while settle was cancelling: GoCardless
    refuses (invalid_state), and the billing request says what it is (complete); one
    cancelled already is expired, however often it is cancelled."""
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    gcsvc.gc.fulfil(session_id)  # its events are late
    processor = gcsvc.client.app[SERVICES].processors["gocardless"]
    assert await processor.expire_checkout(session_id, "expire-1") == "complete"
    gcsvc.gc.billing_requests[session_id]["status"] = "pending"
    assert await processor.expire_checkout(session_id, "expire-2") == "expired"
    assert await processor.expire_checkout(session_id, "expire-3") == "expired"


# --- refunds --------------------------------------------------------------------------------


async def captured(gcsvc: GoCardlessService, amount: int = 10_000) -> str:
    await gcsvc.gbp_invoice()
    payment_id = str(gcsvc.gc.payment("inv_1", amount)["id"])
    await gcsvc.move(payment_id, "submitted", "confirmed")
    return payment_id


async def test_a_merchant_refund_is_post_refunds_under_its_key(gcsvc: GoCardlessService) -> None:
    payment_id = await captured(gcsvc)
    await gcsvc.call("POST", f"/v1/payments/{payment_id}/refunds",
                     {"id": "rf_1", "amount": 2_500, "reason": "a discount"}, expect=202)
    await gcsvc.settle()
    [made] = gcsvc.gc.calls_to("POST", "/refunds")
    # The refund's own id is its key (CONTRACT §5), as the outbox row says.
    key = await gcsvc.db.fetchval(
        "select payload->>'idempotency_key' from outbox where kind = 'refund'")
    assert made.idempotency_key == key == "rf_1"
    body = made.body["refunds"]
    assert (body["amount"], body["total_amount_confirmation"], body["links"]) == (
        2_500, 2_500, {"payment": payment_id})
    assert body["metadata"] == {"settle_key": key, "settle_refund": "rf_1",
                                "settle_reason": "merchant"}  # its purpose
    assert (await gcsvc.call("GET", "/v1/refunds/rf_1"))["status"] == "pending"
    # A second refund confirms the total with the first counted.
    await gcsvc.call("POST", f"/v1/payments/{payment_id}/refunds",
                     {"id": "rf_2", "amount": 1_000}, expect=202)
    await gcsvc.settle()
    assert gcsvc.gc.calls_to("POST", "/refunds")[1].body["refunds"][
        "total_amount_confirmation"] == 3_500
    assert (await gcsvc.get_invoice("inv_1"))["amount_paid"] == 6_500


async def test_a_refund_whose_answer_was_lost_is_the_one_its_key_made(
        gcsvc: GoCardlessService) -> None:
    payment_id = await captured(gcsvc)
    gcsvc.gc.lose_next_refund_answer = True
    await gcsvc.call("POST", f"/v1/payments/{payment_id}/refunds",
                     {"id": "rf_1", "amount": 2_500}, expect=202)
    await gcsvc.settle()
    tries = gcsvc.gc.calls_to("POST", "/refunds")
    assert len(tries) == 2 and tries[0].idempotency_key == tries[1].idempotency_key
    [made] = gcsvc.gc.refunds.values()
    assert len(gcsvc.gc.calls_to("GET", f"/refunds/{made['id']}")) == 1  # the 409's answer
    assert (await gcsvc.call("GET", "/v1/refunds/rf_1"))["status"] == "pending"
    assert (await gcsvc.payment_view(payment_id))["refunded"] == 2_500


async def test_a_refund_retried_after_the_keys_window_asks_first(
        gcsvc: GoCardlessService) -> None:
    payment_id = await captured(gcsvc)
    processor = GoCardlessProcessor(access_token=gcsvc.gc.access_token, api_base=gcsvc.gc.base)
    made = await processor.refund(payment_id, 1_000, "refund:rf_9", {"settle_key": "refund:rf_9"})
    assert made.status == "pending"
    found = await processor.find_refund(payment_id, "refund:rf_9")
    assert found is not None and found.id == made.id
    assert await processor.find_refund(payment_id, "refund:another") is None
    # Its key forgotten, a second POST unaware of the first is refused by the total.
    gcsvc.gc.forget_idempotency_keys()
    with pytest.raises(PermanentError, match="total amount confirmation"):
        await processor._create("refunds", {
            "amount": 1_000, "total_amount_confirmation": 1_000,
            "links": {"payment": payment_id}}, "refund:rf_9")
    await processor.close()


# --- reconcile ------------------------------------------------------------------------------


async def test_reconcile_applies_a_fulfilled_billing_requests_confirmed_payment(
        gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    late = gcsvc.gc.fulfil(session_id)
    payment_id = gcsvc.gc.billing_requests[session_id]["links"]["payment_request_payment"]
    late += gcsvc.gc.move(payment_id, "submitted") + gcsvc.gc.move(payment_id, "confirmed")
    # No webhook ever came.
    result = await reconcile(gcsvc, "inv_1")
    assert result["errors"] == []
    assert [r["payment_id"] for r in result["recovered"]] == [payment_id]
    invoice = await gcsvc.get_invoice("inv_1")
    assert (invoice["status"], invoice["amount_paid"]) == ("paid", 10_000)
    payment = await gcsvc.payment_view(payment_id)
    assert (payment["source"], payment["status"]) == ("gocardless", "succeeded")
    # The webhooks arrive after all: nothing moves again.
    await gcsvc.deliver(*late)
    assert (await gcsvc.get_invoice("inv_1"))["amount_paid"] == 10_000
    assert await gcsvc.mails("invoice_paid") == 1


async def test_a_direct_debit_first_learned_through_reconcile_is_one_on_the_page(
        gcsvc: GoCardlessService) -> None:
    """The customer set up the Direct Debit and GoCardless submitted it, but no webhook
    came: reconcile records the payment as a Direct Debit on its way (GoCardless's
    `SessionState.method`), so the page says so, as it would had the webhooks come."""
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    gcsvc.gc.fulfil(session_id)
    payment_id = gcsvc.gc.billing_requests[session_id]["links"]["payment_request_payment"]
    gcsvc.gc.move(payment_id, "submitted")  # its webhooks are lost
    result = await reconcile(gcsvc, "inv_1")
    assert result["errors"] == [] and result["sessions_checked"] == 1
    payment = await gcsvc.payment_view(payment_id)
    assert (payment["method"], payment["status"]) == ("direct_debit", "processing")
    view_token = await gcsvc.db.fetchval("select view_token from invoices")
    page = await (await gcsvc.client.get(f"/i/{view_token}?session={session_id}")).text()
    assert "Your Direct Debit payment of £100.00 is on its way" in page
    # Confirmed days later, its webhook lost too: reconcile asks again, and applies it.
    gcsvc.gc.move(payment_id, "confirmed")
    assert [r["payment_id"] for r in (await reconcile(gcsvc, "inv_1"))["recovered"]] == [
        payment_id]
    payment = await gcsvc.payment_view(payment_id)
    assert (payment["method"], payment["status"]) == ("direct_debit", "succeeded")


async def test_reconcile_asks_about_a_payment_left_processing(gcsvc: GoCardlessService) -> None:
    await gcsvc.gbp_invoice()
    payment_id = str(gcsvc.gc.payment("inv_1", 4_000)["id"])
    await gcsvc.move(payment_id, "submitted")
    gcsvc.gc.move(payment_id, "confirmed")  # its webhook is lost
    result = await reconcile(gcsvc, "inv_1")
    assert result["payments_checked"] == 1 and result["errors"] == []
    assert (await gcsvc.payment_view(payment_id))["status"] == "succeeded"
    assert (await gcsvc.get_invoice("inv_1"))["amount_paid"] == 4_000


# --- no call inside a transaction; a GoCardless that hangs or refuses -----------------------


def in_transaction_probe(db: asyncpg.Pool, seen: list[str]) -> Any:
    """A probe for the stand-in: while settle waits for GoCardless, is any connection to
    the test database inside a transaction? (Asked of PostgreSQL itself.)"""
    async def probe(call: Call) -> None:
        count = await db.fetchval(
            """select count(*) from pg_stat_activity
               where datname = current_database() and pid <> pg_backend_pid()
                 and state like 'idle in transaction%'""")
        seen.append(f"{call.method} {call.path}: {count}")
    return probe


async def test_the_probe_sees_a_transaction_held_across_a_call(
        gcsvc: GoCardlessService, db: asyncpg.Pool) -> None:
    """The probe below is not blind: a call made inside a transaction is seen."""
    seen: list[str] = []
    gcsvc.gc.probe = in_transaction_probe(db, seen)
    payment_id = str(gcsvc.gc.payment("inv_1", 1_000)["id"])
    processor = GoCardlessProcessor(access_token=gcsvc.gc.access_token, api_base=gcsvc.gc.base)
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("select 1")
        await processor.retrieve_payment(payment_id)
    assert seen == [f"GET /payments/{payment_id}: 1"]
    await processor.close()


async def test_no_event_fetch_happens_while_a_transaction_is_open(
        gcsvc: GoCardlessService, db: asyncpg.Pool) -> None:
    seen: list[str] = []
    gcsvc.gc.probe = in_transaction_probe(db, seen)
    await gcsvc.gbp_invoice()
    session_id = await gcsvc.open_checkout()
    await gcsvc.deliver(*gcsvc.gc.fulfil(session_id))
    payment_id = gcsvc.gc.billing_requests[session_id]["links"]["payment_request_payment"]
    for action in ("submitted", "confirmed", "late_failure"):
        await gcsvc.move(payment_id, action)
    assert (await gcsvc.payment_view(payment_id))["reversed"] == 10_000
    fetches = [s for s in seen if s.startswith("GET")]
    assert len(fetches) >= 5, seen
    assert all(s.endswith(": 0") for s in seen), seen


@pytest.fixture
async def job_ctx(gcsvc: GoCardlessService) -> Any:
    settings = gcsvc.settings
    pool = await create_pool(settings.database_url, min_size=1, max_size=4)
    queue = make_queue(settings)
    processors = make_processors(settings)
    context: WorkerContext = {
        "settings": settings, "redis": queue, "job_try": 1, "handlers": event_handlers(),
        "services": make_services(settings, pool, queue, processors)}
    yield context
    for processor in processors.values():
        await processor.close()
    await queue.aclose()
    await pool.close()


@pytest.mark.parametrize("trouble", ["hangs", "500", "429"])
async def test_a_gocardless_that_hangs_or_fails_is_retried_then_applied(
        gcsvc: GoCardlessService, job_ctx: Any, trouble: str) -> None:
    await gcsvc.gbp_invoice()
    payment_id = str(gcsvc.gc.payment("inv_1", 10_000, status="confirmed")["id"])
    await gcsvc.post(gocardless_event("payments", "confirmed", payment=payment_id))
    pk = await gcsvc.db.fetchval("select id from events")
    if trouble == "hangs":
        # Longer than the job's network time (JOB_TIMEOUT_SECONDS 5: 2.5 s).
        gcsvc.gc.delay = 4.0
    else:
        gcsvc.gc.failures.append(int(trouble))
    with pytest.raises(Retry):
        await process_event(job_ctx, pk)
    row = await gcsvc.db.fetchrow("select status, reason, attempts from events")
    assert (row["status"], row["attempts"]) == ("pending", 1)
    assert row["reason"].startswith("transient: ")
    assert gcsvc.gc.access_token not in row["reason"]
    gcsvc.gc.delay = 0
    assert await process_event(job_ctx, pk) == "processed"
    assert (await gcsvc.get_invoice("inv_1"))["amount_paid"] == 10_000


async def test_a_fetch_gocardless_refuses_fails_the_event_with_its_message(
        gcsvc: GoCardlessService, job_ctx: Any) -> None:
    await gcsvc.post(gocardless_event("refunds", "paid", refund="RF_NOT_OURS"))
    pk = await gcsvc.db.fetchval("select id from events")
    assert await process_event(job_ctx, pk) == "failed"
    assert await gcsvc.db.fetchval("select reason from events") == "GoCardless: No such refund"


async def test_errors_are_settles_and_never_carry_the_token(gcstandin: GoCardlessStandIn) -> None:
    processor = GoCardlessProcessor(access_token=gcstandin.access_token, api_base=gcstandin.base)
    payment_id = str(gcstandin.payment("inv_1", 1_000)["id"])
    for status in (500, 502, 429):
        gcstandin.failures.append(status)
        with pytest.raises(Unavailable):
            await processor.retrieve_payment(payment_id)
    wrong = GoCardlessProcessor(access_token="gc_live_secret_token", api_base=gcstandin.base)
    with pytest.raises(PermanentError) as refused:
        await wrong.retrieve_payment(payment_id)
    assert "gc_live_secret_token" not in str(refused.value)
    assert str(refused.value) == "GoCardless: Invalid token"
    unreachable = GoCardlessProcessor(access_token="t", api_base="http://127.0.0.1:9")
    with pytest.raises(Unavailable, match="ConnectionError"):
        await unreachable.retrieve_payment(payment_id)
    for made in (processor, wrong, unreachable):
        await made.close()


async def test_the_executor_bounds_the_calls_in_flight(gcstandin: GoCardlessStandIn) -> None:
    payment_id = str(gcstandin.payment("inv_1", 1_000)["id"])
    gcstandin.delay = 0.3
    processor = GoCardlessProcessor(access_token=gcstandin.access_token,
                                    api_base=gcstandin.base, threads=2, timeout=30)
    answers = await asyncio.gather(*(processor.retrieve_payment(payment_id) for _ in range(6)))
    assert [a.id for a in answers] == [payment_id] * 6
    assert gcstandin.most_in_flight == 2
    assert len(processor._executor._threads) == 2
    await processor.close()


async def test_a_call_waiting_behind_a_hung_one_ends_within_its_own_limit(
        gcstandin: GoCardlessStandIn) -> None:
    payment_id = str(gcstandin.payment("inv_1", 1_000)["id"])
    gcstandin.delay = 3.0
    processor = GoCardlessProcessor(access_token=gcstandin.access_token,
                                    api_base=gcstandin.base, threads=1, timeout=1)
    outcomes = await asyncio.gather(*(processor.retrieve_payment(payment_id) for _ in range(3)),
                                    return_exceptions=True)
    assert all(isinstance(o, Unavailable) for o in outcomes), outcomes
    assert gcstandin.most_in_flight == 1
    await processor.close()


# --- what it says of itself ----------------------------------------------------------------


def test_what_gocardless_takes_and_refuses() -> None:
    processor = GoCardlessProcessor(access_token=None)
    assert (processor.way, processor.name, processor.signature_refused_status) == (
        "direct_debit", "gocardless", 498)
    assert [c for c in ("gbp", "EUR", "sek", "dkk", "aud", "nzd", "cad", "usd", "jpy", "chf")
            if processor.takes(c)] == ["gbp", "EUR", "sek", "dkk", "aud", "nzd", "cad", "usd"]
    assert processor.amount_refused(99, "gbp") == "GoCardless collects at least 1.00 GBP"
    assert processor.amount_refused(100, "gbp") is None
    assert processor.amount_refused(500_001, "eur") == "GoCardless collects at most 5000.00 EUR"
    assert processor.amount_refused(1_000, "jpy") == "GoCardless does not collect JPY"
    assert processor.unit_refused(1, "gbp") is None
    assert processor.checkout_origins == ("https://pay.gocardless.com",)
    assert GoCardlessProcessor(access_token=None, api_base="https://api-sandbox.gocardless.com"
                               ).checkout_origins == ("https://pay-sandbox.gocardless.com",)
    assert not processor.configured
    assert processor.return_url("https://x.test/i/t") == "https://x.test/i/t?session={billing_request}"


def test_its_settings_are_read_and_a_bad_one_names_its_variable() -> None:
    read = GoCardlessSettings.from_env({
        "GOCARDLESS_ACCESS_TOKEN": " gc_token ", "GOCARDLESS_API_BASE": "http://127.0.0.1:1/",
        "GOCARDLESS_WEBHOOK_SECRETS": "a, b,,"})
    assert (read.access_token, read.api_base, read.webhook_secrets, read.configured) == (
        "gc_token", "http://127.0.0.1:1", ("a", "b"), True)
    default = GoCardlessSettings.from_env({})
    assert (default.api_base, default.configured) == (LIVE_API, False)
    with pytest.raises(SettingsError, match="^GOCARDLESS_ACCESS_TOKEN"):
        GoCardlessSettings.from_env({"GOCARDLESS_ACCESS_TOKEN": "gc token"})


@pytest.mark.parametrize("name,value,line", [
    ("GOCARDLESS_API_BASE", "ftp://gocardless", "GOCARDLESS_API_BASE is not a http/https:// URL"),
    ("GOCARDLESS_ACCESS_TOKEN", "two words",
     "GOCARDLESS_ACCESS_TOKEN holds spaces or characters a token never has"),
])
def test_a_bad_gocardless_setting_stops_a_process_at_start(name: str, value: str,
                                                           line: str) -> None:
    done = subprocess.run([SETTLE, "worker"], cwd=ROOT, capture_output=True, text=True,
                          timeout=30, env={name: value})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"settle: {line}"]
