"""No network call inside a database transaction or under a row lock (issue 12).

A slow processor or mail server delays only its own work: the invoice and
the outbox row are free while the call runs; an attempt that outlasts its
budget counts as an attempt, with backoff, and is never silently cancelled.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from arq.constants import in_progress_key_prefix, job_key_prefix

from core.queue import job_id
from core.tx import Books, nothing
from delivery import outbox
from jobs.effects import KINDS
from sandbox.events import session_completed
from sandbox.stripe import StripeStandIn
from tests.conftest import ROOT, SETTLE, drain, process_env, running_worker, wait_for
from tests.mailserver import MailServer
from tests.service import Service
from tests.test_chaos import owner_of


def called(standin: StripeStandIn) -> Any:
    async def any_call() -> bool:
        return bool(standin.calls)

    return any_call


async def locked_elsewhere(db: asyncpg.Pool, sql: str, *args: Any) -> bool:
    """Whether a row is locked by another transaction right now (NOWAIT fails)."""
    async with db.acquire() as conn, conn.transaction():
        try:
            await conn.execute(sql + " for update nowait", *args)
        except asyncpg.LockNotAvailableError:
            return True
    return False


async def test_a_slow_processor_never_holds_the_invoice(paying: Service,
                                                        standin: StripeStandIn) -> None:
    invoice = await paying.invoice("inv_1", 5_000)
    standin.delay = 1.5
    opening = asyncio.create_task(paying.open_link(invoice["pay_url"]))
    await wait_for(called(standin), timeout=10, interval=0.01)
    # Stripe is thinking: the invoice row is free, and a capture applies meanwhile.
    assert not await locked_elsewhere(paying.db, "select 1 from invoices where id = $1",
                                      "inv_1")
    started = time.monotonic()
    await paying.deliver(session_completed("inv_1", 1_000, "pi_other"))
    assert time.monotonic() - started < 1.5
    assert (await opening).status == 303


async def test_a_link_cancelled_while_its_session_is_made_is_gone(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 1_000)
    standin.delay = 1.0
    opening = asyncio.create_task(paying.open_link(request["url"]))
    await wait_for(called(standin), timeout=10, interval=0.01)
    await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    gone = await opening
    assert gone.status == 410 and "cancelled" in await gone.text()
    standin.delay = 0
    await paying.settle()
    # The session made meanwhile was expired, not left open to take money.
    assert [s["status"] for s in standin.sessions.values()] == ["expired"]


async def test_a_request_larger_than_what_remains_charges_what_remains(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 4_000)
    await paying.deliver(session_completed("inv_1", 3_000, "pi_other"))
    opened = await paying.open_link(request["url"])
    assert opened.status == 303
    assert standin.session_for_url(opened.headers["Location"])["amount_total"] == 2_000


async def test_a_slow_mail_server_holds_no_row_and_no_transaction(
        svc: Service, mail: MailServer) -> None:
    mail.data_delay = 1.5
    await svc.invoice("inv_1", 10_000)
    async with running_worker(svc.settings):
        await svc.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)

        async def sending() -> bool:
            return bool(await svc.db.fetchval(
                """select lease_until > now() from outbox
                   where key = 'mail:payment_received:pi_1'"""))

        await wait_for(sending, timeout=20, interval=0.02)
        assert not await locked_elsewhere(
            svc.db, "select 1 from outbox where key = $1", "mail:payment_received:pi_1")
        # Throughout the 1.5 s the server takes, no transaction is left waiting on it
        # (another job's transaction may be between two statements at any instant).
        lingering: list[int] = []

        async def delivered() -> list[Any]:
            lingering.append(await svc.db.fetchval(
                """select count(*) from pg_stat_activity
                   where datname = current_database() and state = 'idle in transaction'
                     and state_change < now() - interval '400 milliseconds'"""))
            return mail.of_kind("payment_received")

        await wait_for(delivered, timeout=20, interval=0.05)
        assert lingering and set(lingering) == {0}, lingering
    row = await svc.db.fetchrow(
        "select status, attempts from outbox where key = 'mail:payment_received:pi_1'")
    assert (row["status"], row["attempts"]) == ("done", 1)


@pytest.mark.retry_base_seconds(30)  # so long that the row is seen waiting
async def test_a_hung_mail_server_is_an_attempt_that_counts(
        svc: Service, mail: MailServer) -> None:
    # The job may run 5 s (JOB_TIMEOUT_SECONDS in the test settings): the server takes 20.
    mail.data_delay = 20
    await svc.invoice("inv_1", 10_000)
    async with running_worker(svc.settings):
        await svc.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)

        async def deferred() -> Any:
            return await svc.db.fetchrow(
                """select attempts, reason, next_attempt_at - now() as wait, lease_until
                   from outbox where key = 'mail:payment_received:pi_1' and reason is not null""")

        row = await wait_for(deferred, timeout=20, interval=0.1)
    assert row["attempts"] == 1 and "did not finish" in row["reason"]
    assert row["lease_until"] is None and row["wait"].total_seconds() > 20


async def deferred_row(db: asyncpg.Pool, kind: str) -> Any:
    """The row of `kind` once an attempt at it was recorded as deferred."""
    return await db.fetchrow(
        """select attempts, reason, next_attempt_at - now() as wait, lease_until
           from outbox where kind = $1 and status = 'pending' and reason is not null""", kind)


# --- a hung processor, as a hung mail server: an attempt that counts, with backoff ------

# The processor client's own timeout, shorter than the attempt's time limit (it ends the
# call) or longer (the attempt's limit does): either way, an attempt that counts.
CLIENT_TIMEOUTS = pytest.mark.parametrize("client_timeout", [1.0, 60.0])


def processor_client_timeout(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    monkeypatch.setattr("worker.services.network_timeout", lambda settings: seconds)


@CLIENT_TIMEOUTS
@pytest.mark.retry_base_seconds(30)  # so long that the row is seen waiting
async def test_a_hung_processor_refund_is_an_attempt_that_counts(
        paying: Service, standin: StripeStandIn, monkeypatch: pytest.MonkeyPatch,
        client_timeout: float) -> None:
    await paying.invoice("inv_1", 5_000)
    await paying.deliver(session_completed("inv_1", 5_000, "pi_1"))
    standin.intents["pi_1"] = {"id": "pi_1", "currency": "usd", "amount": 5_000,
                               "amount_received": 5_000, "metadata": {"invoice_id": "inv_1"}}
    await paying.call("POST", "/v1/payments/pi_1/refunds",
                      {"id": "rf_1", "amount": 2_000, "reason": "Returned"}, expect=202)
    processor_client_timeout(monkeypatch, client_timeout)
    # The job may run 5 s (JOB_TIMEOUT_SECONDS in the test settings): Stripe takes 20.
    standin.delay = 20
    async with running_worker(paying.settings):
        row = await wait_for(lambda: deferred_row(paying.db, "refund"), timeout=20)
    assert row["attempts"] == 1 and row["lease_until"] is None
    assert row["wait"].total_seconds() > 20
    assert len(standin.calls_to("/v1/refunds")) == 1
    assert (await paying.call("GET", "/v1/refunds/rf_1"))["status"] == "pending"


@CLIENT_TIMEOUTS
@pytest.mark.retry_base_seconds(30)  # so long that the row is seen waiting
async def test_a_hung_processor_checkout_expiry_is_an_attempt_that_counts(
        paying: Service, standin: StripeStandIn, monkeypatch: pytest.MonkeyPatch,
        client_timeout: float) -> None:
    await paying.invoice("inv_1", 5_000)
    request = await paying.request("inv_1", 1_000)
    opened = await paying.open_link(request["url"])
    session = standin.session_for_url(opened.headers["Location"])
    await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    processor_client_timeout(monkeypatch, client_timeout)
    standin.delay = 20
    async with running_worker(paying.settings):
        row = await wait_for(lambda: deferred_row(paying.db, "expire_checkout"), timeout=20)
    assert row["attempts"] == 1 and row["lease_until"] is None
    assert row["wait"].total_seconds() > 20
    assert len(standin.calls_to(f"/v1/checkout/sessions/{session['id']}/expire")) == 1


# --- the window between the mail server's acceptance and settle's record -----------------

MAIL = "mail:payment_received:pi_1"


async def quitting(mail: MailServer) -> tuple[str, int] | None:
    """The peer whose QUIT the server is answering (late), if any."""
    return mail.quitting[0] if mail.quitting else None


async def no_one_quitting(mail: MailServer) -> bool:
    return not mail.quitting  # a late QUIT of an earlier test's may still be answered


async def test_a_mail_is_recorded_sent_before_its_quit_is_answered(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()  # its invoice_sent mail first, before the server's goodbyes are slow
    await wait_for(lambda: no_one_quitting(mail), timeout=10, interval=0.05)
    mail.quit_delay = 3.0
    async with running_worker(svc.settings):
        await svc.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)
        await wait_for(lambda: quitting(mail), timeout=20, interval=0.01)
        status = await svc.db.fetchval("select status from outbox where key = $1", MAIL)
        still_quitting = bool(mail.quitting)
    assert (status, still_quitting) == ("done", True)
    assert len(mail.of_kind("payment_received")) == 1


async def test_a_worker_killed_while_it_waits_on_quit_sends_no_second_copy(
        svc: Service, mail: MailServer, redis: aioredis.Redis) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()  # its invoice_sent mail, before the server's goodbyes are slow
    await wait_for(lambda: no_one_quitting(mail), timeout=10, interval=0.05)
    mail.quit_delay = 5.0

    def worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([SETTLE, "worker"], env=process_env(svc.settings), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = worker()
    try:
        await svc.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)
        _, port = await wait_for(lambda: quitting(mail), timeout=30, interval=0.01)
        # The worker holds the connection: it is waiting for the server's goodbye.
        assert owner_of(port, {"worker": first}) == "worker"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    mail.quit_delay = 0.0
    outbox_id = await svc.db.fetchval("select id from outbox where key = $1", MAIL)
    job = job_id(svc.settings.queue_name, "outbox", outbox_id)
    # As if the killed worker's lease and arq's mark of its job had both run out: another
    # worker runs the job again at once, and would send a row still pending again.
    await svc.db.execute("update outbox set lease_until = null")
    await redis.delete(in_progress_key_prefix + job)
    second = worker()
    try:
        async def run_again() -> bool:  # arq drops a job's key once it has finished
            return not await redis.exists(job_key_prefix + job)

        await wait_for(run_again, timeout=30, interval=0.1)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    row = await svc.db.fetchrow("select status, attempts, result from outbox where key = $1",
                                MAIL)
    assert (row["status"], row["attempts"]) == ("done", 1)
    copies = [r for r in mail.received
              if str(r.message["Message-ID"]) == row["result"]["message_id"]]
    assert len(copies) == 1


async def test_a_mail_accepted_is_recorded_though_the_database_is_slow_to_answer(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()  # its invoice_sent mail first, at the server's usual pace
    mail.data_delay = 1.5
    async with running_worker(svc.settings):
        await svc.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)

        async def claimed() -> int | None:
            return await svc.db.fetchval(  # type: ignore[no-any-return]
                "select id from outbox where key = $1 and lease_until > now()", MAIL)

        outbox_id = await wait_for(claimed, timeout=20, interval=0.01)
        claimed_at = time.monotonic()
        # From the claim on, writing to the row waits: past the attempt's network time
        # (half the job's 5 s), well before the job's end. That time is the point here, so
        # it is waited for: the record blocked on this lock, and the network time gone.
        network_time = KINDS["email"].budget(svc.settings)
        async with svc.db.acquire() as conn, conn.transaction():
            await conn.execute("select 1 from outbox where id = $1 for update", outbox_id)

            async def recording_waits_past_the_network_time() -> bool:
                waiting = await svc.db.fetchval(
                    """select count(*) from pg_stat_activity
                       where datname = current_database() and wait_event_type = 'Lock'
                         and query like 'update outbox set status = ''done''%'""")
                return bool(waiting) and time.monotonic() - claimed_at > network_time + 0.3

            await wait_for(recording_waits_past_the_network_time, timeout=20, interval=0.05)

        async def recorded() -> bool:
            return await svc.db.fetchval(
                "select status from outbox where id = $1", outbox_id) == "done"

        await wait_for(recorded, timeout=20)
    await drain(svc.settings, svc.db)  # a resend, were one owed, would happen here
    row = await svc.db.fetchrow("select status, attempts from outbox where key = $1", MAIL)
    assert (row["status"], row["attempts"]) == ("done", 1)
    assert len(mail.of_kind("payment_received")) == 1


async def test_waiting_for_the_message_in_flight_is_not_a_failed_attempt(
        svc: Service, mail: MailServer) -> None:
    """One message at a time is between the server's acceptance and its record: a mail
    that waits for its turn behind a slow one has not failed."""
    await svc.invoice("inv_1", 10_000)
    await svc.invoice("inv_2", 10_000)
    await svc.settle()  # their invoice_sent mails first, at the server's usual pace
    mail.data_delay = 1.8
    await svc.deliver(session_completed("inv_1", 4_000, "pi_1"),
                      session_completed("inv_2", 4_000, "pi_2"), settle=False)
    async with running_worker(svc.settings):
        async def both_sent() -> bool:
            return await svc.db.fetchval(
                """select count(*) from outbox
                   where key like 'mail:payment_received:%' and status = 'done'""") == 2

        await wait_for(both_sent, timeout=30)
    attempts = [r["attempts"] for r in await svc.db.fetch(
        "select attempts from outbox where key like 'mail:payment_received:%' order by id")]
    assert attempts == [1, 1]
    assert len(mail.of_kind("payment_received")) == 2


# --- a lease that expired: the worker that held it no longer decides the row ----------


async def owed(db: asyncpg.Pool) -> int:
    row_id: int = await db.fetchval(
        """insert into outbox (kind, key, payload) values ('email', 'mail:test:lease', '{}')
           returning id""")
    return row_id


async def taken_over(db: asyncpg.Pool) -> tuple[int, asyncpg.Record, asyncpg.Record]:
    """A row claimed by a worker whose lease then expired, and claimed again by another."""
    outbox_id = await owed(db)
    late = await outbox.claim(Books(db, nothing, ''), outbox_id, lease=0.0)
    await asyncio.sleep(0.01)
    holder = await outbox.claim(Books(db, nothing, ''), outbox_id, lease=60.0)
    assert late is not None and holder is not None
    return outbox_id, late, holder


async def test_a_worker_whose_lease_expired_cannot_release_or_fail_the_row(
        db: asyncpg.Pool) -> None:
    outbox_id, late, holder = await taken_over(db)
    assert not await outbox.record_deferred(Books(db, nothing, ''), outbox_id, late["lease_token"], "late", 1.0)
    assert not await outbox.record_busy(Books(db, nothing, ''), outbox_id, late["lease_token"], 1.0)
    async with db.acquire() as conn:
        assert not await outbox.record_failed(conn, outbox_id, late["lease_token"], "late")
    row = await db.fetchrow(
        "select status, attempts, reason, lease_until > now() as leased from outbox")
    assert dict(row) == {"status": "pending", "attempts": 2, "reason": None, "leased": True}
    # The worker holding the lease decides.
    assert await outbox.record_deferred(Books(db, nothing, ''), outbox_id, holder["lease_token"], "busy", 1.0)
    row = await db.fetchrow("select status, reason, lease_until from outbox")
    assert (row["status"], row["reason"], row["lease_until"]) == ("pending", "busy", None)


async def test_an_effect_done_by_a_worker_whose_lease_expired_is_recorded_done(
        db: asyncpg.Pool) -> None:
    """Done is what happened, not a claim on the row: whoever saw the effect happen
    records it, and the new holder's outcome then changes nothing (it would otherwise
    do the effect a third time)."""
    outbox_id, late, holder = await taken_over(db)
    assert await outbox.record_done(Books(db, nothing, ''), outbox_id, {"message_id": "<late@example>"})
    assert not await outbox.record_deferred(Books(db, nothing, ''), outbox_id, holder["lease_token"], "4xx", 1.0)
    async with db.acquire() as conn:
        assert not await outbox.record_failed(conn, outbox_id, holder["lease_token"], "5xx")
    row = await db.fetchrow("select status, reason, result from outbox")
    assert (row["status"], row["reason"], row["result"]) == (
        "done", None, {"message_id": "<late@example>"})


def test_an_endpoint_has_its_15_seconds_within_the_default_job() -> None:
    """CONTRACT §9: any 2xx within 15 s is delivered; every timeout is shorter than the job."""
    from core.settings import Settings as Defaults
    from jobs.outbox import job_time
    from notify.webhook import TIMEOUT_SECONDS

    defaults = Defaults()
    assert TIMEOUT_SECONDS == 15
    assert min(TIMEOUT_SECONDS, KINDS["webhook"].budget(defaults)) == 15
    assert KINDS["webhook"].budget(defaults) < job_time(defaults)
    assert KINDS["email"].budget(defaults) < job_time(defaults)
