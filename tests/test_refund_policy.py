"""OVERPAYMENT_POLICY=refund: the excess goes back through the processor, once (§4)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import asyncpg
import pytest

from core.processor import RefundMade
from core.services import Services
from jobs.effects import KINDS

from tests.conftest import FAST_RETRIES, replace, with_stripe
from tests.service import Service
from sandbox.events import charge_refunded, session_completed
from sandbox.stripe import StripeStandIn
from worker.app import create_app
from core.settings import Settings


REFUND_ROW = "select {} from outbox where kind = 'refund'"


@pytest.fixture
async def refunding(aiohttp_client: Any, settings: Settings, db: asyncpg.Pool,
                    standin: StripeStandIn) -> Service:
    policy = replace(with_stripe(settings, api_key=standin.api_key, api_base=standin.base),
                     overpayment_policy="refund", retry_base_seconds=FAST_RETRIES)
    service = Service(await aiohttp_client(create_app(policy)), policy, db)
    await service.customer()
    return service


async def test_excess_is_refunded_not_credited(refunding: Service, standin: StripeStandIn) -> None:
    await refunding.invoice("inv_1", 10_000)
    await refunding.deliver(session_completed("inv_1", 12_000, "pi_1"))
    [call] = standin.calls_to("/v1/refunds")
    assert call.params["payment_intent"] == "pi_1" and call.params["amount"] == "2000"
    assert call.idempotency_key == "refund-excess:pi_1"
    inv = await refunding.get_invoice("inv_1")
    assert (inv["status"], inv["amount_paid"], inv["payments"][0]["credited"]) == ("paid", 10_000, 0)
    assert await refunding.balance() == {}
    outbox = await refunding.db.fetchrow(REFUND_ROW.format("status, result"))
    assert outbox["status"] == "done" and outbox["result"]["refund_id"].startswith("re_")

    # Stripe then reports the refund settle made: it takes nothing back from the books.
    await refunding.deliver(charge_refunded("pi_1", 12_000, 2_000, invoice_id="inv_1"))
    inv = await refunding.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["payments"][0]["refunded"]) == (10_000, 2_000)
    # A later merchant refund beyond it does.
    await refunding.deliver(charge_refunded("pi_1", 12_000, 3_000, invoice_id="inv_1"))
    assert (await refunding.get_invoice("inv_1"))["amount_paid"] == 9_000


async def test_refund_is_retried_on_transient_errors(refunding: Service,
                                                     standin: StripeStandIn) -> None:
    standin.failures = [500, 429]
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"))
    calls = standin.calls_to("/v1/refunds")
    assert len(calls) == 3 and {c.idempotency_key for c in calls} == {"refund-excess:pi_1"}
    outbox = await refunding.db.fetchrow(REFUND_ROW.format("status, attempts"))
    assert (outbox["status"], outbox["attempts"]) == ("done", 3)


async def test_refused_refund_is_recorded_not_retried_and_the_excess_credited(
        refunding: Service, standin: StripeStandIn, mail: Any) -> None:
    standin.failures = [400]
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"))
    assert len(standin.calls_to("/v1/refunds")) == 1
    outbox = await refunding.db.fetchrow(REFUND_ROW.format("status, reason"))
    assert outbox["status"] == "failed" and "InvalidRequestError" in outbox["reason"]
    # CONTRACT §4 (updated): a refund that fails for good credits the excess instead.
    await refunding.settle()
    assert await refunding.balance() == {"usd": 500}
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (500, 0)
    [notice] = mail.of_kind("credit_issued")
    assert "$5.00" in notice.part("plain")


async def run_jobs(service: Service, kind: str) -> list[str]:
    """Run the jobs of one kind for every row owing work now, in this process, once each
    (no arq worker: a deferred job must not keep a burst worker waiting)."""
    from arq import Retry

    from core.queue import queue_client
    from jobs.events import process_event
    from jobs.outbox import deliver_outbox
    from tests.conftest import worker_ctx

    queue = queue_client(service.settings.redis_url, service.settings.queue_name)
    outcomes = []
    try:
        ctx = worker_ctx(service.settings, service.db, queue)
        if kind == "event":
            ids = [r["id"] for r in await service.db.fetch(
                "select id from events where status = 'pending' order by id")]
        else:
            ids = [r["id"] for r in await service.db.fetch(
                "select id from outbox where status = 'pending' and kind = $1 order by id",
                kind)]
        for ident in ids:
            try:
                outcomes.append(await (process_event if kind == "event" else deliver_outbox)(
                    ctx, ident))
            except Retry:
                outcomes.append("retry")
    finally:
        await ctx["services"].processor.close()
        await queue.aclose()
    return outcomes


async def test_excess_is_not_counted_refunded_until_the_processor_confirms(
        refunding: Service, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"), settle=False)
    assert await run_jobs(refunding, "event") == ["processed"], await db.fetch(
        "select reason from events")

    async def split() -> tuple[int, int, int]:
        row = await db.fetchrow("select excess_pending, excess_refunded, credited from payments")
        return row["excess_pending"], row["excess_refunded"], row["credited"]

    assert await split() == (500, 0, 0)
    standin.failures = [503]  # Stripe is down: nothing is confirmed
    assert await run_jobs(refunding, "refund") == ["retry"]
    assert await split() == (500, 0, 0)
    assert await refunding.balance() == {}
    await db.execute("update outbox set next_attempt_at = now(), lease_until = null")
    assert await run_jobs(refunding, "refund") == ["done"]
    assert await split() == (0, 500, 0)


async def test_a_refund_that_fails_after_it_was_made_credits_the_excess(
        refunding: Service, standin: StripeStandIn) -> None:
    from sandbox.events import refund_event

    standin.refund_status = "pending"
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"))
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (0, 500)
    [refund] = standin.refunds.values()
    refund["status"] = "failed"
    failure = refund_event("refund.failed", refund)
    await refunding.deliver(failure, failure)  # and delivered twice
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (500, 0)
    assert await refunding.balance() == {"usd": 500}
    assert (await refunding.get_invoice("inv_1"))["amount_paid"] == 1_000


async def test_a_refund_waiting_on_the_customer_counts_and_a_canceled_one_credits(
        refunding: Service, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    """Stripe answers requires_action (settle's pending: the excess leaves the books),
    then cancels it (settle's failed: the excess is credited instead, once)."""
    standin.refund_status = "requires_action"
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"))
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (0, 500)
    assert await db.fetchval("select status from refunds") == "pending"
    [refund] = standin.refunds.values()
    canceled = standin.fail_refund(refund["id"], "canceled")
    await refunding.deliver(canceled, canceled)
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (500, 0)
    assert await refunding.balance() == {"usd": 500}
    assert await db.fetchval("select status from refunds") == "failed"


async def test_an_old_refund_asks_before_it_is_retried(
        refunding: Service, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    """Stripe made the refund, its answer was lost, and the retry comes after Stripe has
    forgotten the idempotency key: settle asks first and refunds once (issue 12.4)."""
    standin.lose_next_refund_answer = True
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"), settle=False)
    assert await run_jobs(refunding, "event") == ["processed"]
    assert await run_jobs(refunding, "refund") == ["retry"]
    assert len(standin.refunds) == 1
    # A day later: the key is forgotten, and the row is tried again.
    standin.forget_idempotency_keys()
    await db.execute("""update outbox set created_at = now() - interval '25 hours',
                        next_attempt_at = now(), lease_until = null where kind = 'refund'""")
    assert await run_jobs(refunding, "refund") == ["done"]
    assert len(standin.refunds) == 1
    assert any(c.method == "GET" for c in standin.calls_to("/v1/refunds"))
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (0, 500)


async def test_an_operators_retry_of_an_old_refund_asks_before_it_refunds(
        refunding: Service, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    """An operator's retry starts the attempts again at 0; the row is still older than
    the idempotency key: settle asks the processor first and refunds once (issue 12.4)."""
    standin.lose_next_refund_answer = True
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"), settle=False)
    assert await run_jobs(refunding, "event") == ["processed"]
    assert await run_jobs(refunding, "refund") == ["retry"]
    assert len(standin.refunds) == 1
    # It ended failed a day later (the processor could not be asked); Stripe has
    # forgotten the key; an operator retries the row.
    standin.forget_idempotency_keys()
    outbox_id = await db.fetchval(
        """update outbox set status = 'failed', done_at = now(), lease_until = null,
                  created_at = now() - interval '25 hours'
           where kind = 'refund' returning id""")
    await refunding.call("POST", f"/v1/ops/outbox/{outbox_id}/retry", expect=202)
    assert await db.fetchval("select attempts from outbox where id = $1", outbox_id) == 0
    assert await run_jobs(refunding, "refund") == ["done"]
    assert len(standin.refunds) == 1
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (0, 500)


async def test_a_refund_given_up_after_a_day_asks_the_processor_before_it_credits(
        refunding: Service, standin: StripeStandIn, db: asyncpg.Pool) -> None:
    """The last try, 24 hours on, made the refund but lost its answer: settle asks before
    it gives up, books the refund and credits nothing (issue 12.2)."""
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"), settle=False)
    assert await run_jobs(refunding, "event") == ["processed"]
    await db.execute("update outbox set created_at = now() - interval '25 hours' "
                     "where kind = 'refund'")
    standin.lose_next_refund_answer = True
    assert await run_jobs(refunding, "refund") == ["done"]
    assert len(standin.refunds) == 1
    assert await refunding.balance() == {}
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (0, 500)


async def test_a_refund_given_up_unasked_is_kept_for_a_retry_and_never_credited(
        refunding: Service, standin: StripeStandIn, db: asyncpg.Pool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Given up after 24 hours with the processor unable to say whether the refund
    happened: the row fails for an operator, nothing is credited, and the operator's retry
    finds the refund and books it, once."""
    from core.errors import Unavailable
    from processors.stripe.client import StripeProcessor

    real = StripeProcessor.find_refund
    looks: list[str] = []

    async def find_refund(self: StripeProcessor, payment_id: str, key: str) -> Any:
        looks.append(key)
        if len(looks) == 2:  # the look before giving up: Stripe does not answer
            raise Unavailable("Stripe: APIConnectionError")
        return await real(self, payment_id, key)

    monkeypatch.setattr(StripeProcessor, "find_refund", find_refund)
    await refunding.invoice("inv_1", 1_000)
    await refunding.deliver(session_completed("inv_1", 1_500, "pi_1"), settle=False)
    assert await run_jobs(refunding, "event") == ["processed"]
    outbox_id = await db.fetchval("update outbox set created_at = now() - interval '25 hours' "
                                  "where kind = 'refund' returning id")
    standin.lose_next_refund_answer = True
    assert await run_jobs(refunding, "refund") == ["failed"]
    assert len(looks) == 2
    row = await db.fetchrow("select status, reason from outbox where id = $1", outbox_id)
    assert row["status"] == "failed" and "unknown" in row["reason"]
    assert await refunding.balance() == {}
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (0, 0)
    assert await db.fetchval("select status from refunds") == "requested"
    # An operator retries it: the processor is asked again, and says it made it.
    await refunding.call("POST", f"/v1/ops/outbox/{outbox_id}/retry", expect=202)
    assert await run_jobs(refunding, "refund") == ["done"]
    assert len(standin.refunds) == 1
    payment = (await refunding.get_invoice("inv_1"))["payments"][0]
    assert (payment["credited"], payment["refunded"]) == (0, 500)
    assert await refunding.balance() == {}


def test_a_worker_with_policy_refund_and_no_api_key_stops_at_start(settings: Settings) -> None:
    import subprocess

    from tests.conftest import ROOT, SETTLE, process_env

    env = process_env(settings, OVERPAYMENT_POLICY="refund")
    env.pop("STRIPE_API_KEY", None)
    done = subprocess.run([SETTLE, "worker"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "settle: OVERPAYMENT_POLICY=refund needs a configured processor (STRIPE_API_KEY or "
        "GOCARDLESS_ACCESS_TOKEN): "
        "overpayments are refunded through the processor"]


class Forgetful:
    """A processor that forgets idempotency keys after two hours (not Stripe's 24)."""

    name = "forgetful"
    idempotency_window = timedelta(hours=2)

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def find_refund(self, payment_id: str, key: str) -> RefundMade | None:
        self.calls.append("find")
        return RefundMade("rf_found", "pending")

    async def refund(self, payment_id: str, amount: int, key: str,
                     metadata: Mapping[str, str]) -> RefundMade:
        self.calls.append("refund")
        return RefundMade("rf_made", "succeeded")


@pytest.mark.parametrize(("age", "calls"), [
    (timedelta(minutes=30), ["refund"]), (timedelta(minutes=90), ["find"])])
async def test_a_refund_asks_first_once_its_processors_key_may_be_forgotten(
        age: timedelta, calls: list[str]) -> None:
    """The idempotency window is the processor's: asked first from its window less an
    hour, whatever Stripe's is."""
    processor = Forgetful()
    services = cast(Services, SimpleNamespace(
        processor=processor, processor_of={"forgetful": processor}.get))

    async def record(_: dict[str, Any]) -> None:
        return None

    answer = await KINDS["refund"].perform(
        services, {"processor": "forgetful", "payment_id": "pay_1", "amount": 100, "age": age},
        "refund:k", 5.0, record)
    assert processor.calls == calls
    assert answer == {"refund_id": "rf_found" if "find" in calls else "rf_made",
                      "status": "pending" if "find" in calls else "succeeded"}
