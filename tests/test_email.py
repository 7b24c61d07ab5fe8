"""Email (CONTRACT §7) against a real SMTP server: kinds, recipients, headers, failures."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from typing import Any

import pytest

from notify.render import message_id
from core.settings import Settings
from tests.conftest import (
    ROOT, SETTLE, drain, process_env, replace, running_worker, wait_for, worker_ctx)
from tests.mailserver import MailServer
from tests.service import Service
from sandbox.events import payment_intent_succeeded, session_completed, signed


# Mail that is refused is tried again soon (a deployment waits 1 s, 2 s, 4 s...).
pytestmark = pytest.mark.retry_base_seconds(0.05)


async def test_each_kind_with_its_recipients_and_headers(paying: Service, mail: MailServer) -> None:
    svc = paying  # payment requests need a processor (§5)
    await svc.invoice("inv_1", 10_000, notify_emails=["books@example.com"])
    request = await svc.request("inv_1", 3_000, to=["payer@example.com"], cc=["cc@example.com"],
                                bcc=["audit@example.com"],
                                note='<script>alert("x")</script> & <a href="http://evil">win</a>')
    await svc.settle()
    [asked] = mail.of_kind("payment_request")
    assert sorted(asked.envelope_to) == ["audit@example.com", "cc@example.com",
                                         "payer@example.com"]
    assert asked.message["To"] == "payer@example.com" and asked.message["Cc"] == "cc@example.com"
    assert asked.message["Bcc"] is None
    assert asked.message["X-Invoice-Id"] == "inv_1"
    assert asked.message["Message-ID"] == message_id(f"mail:payment_request:{request['id']}:0",
                                                     "billing@localhost")
    assert asked.envelope_from == "billing@localhost"
    assert "$30.00" in asked.message["Subject"]
    text, html = asked.part("plain"), asked.part("html")
    assert request["url"] in text and request["url"] in html
    assert '<script>alert("x")</script>' in text
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<a href="http://evil">' not in html

    await svc.call("POST", f"/v1/payment-requests/{request['id']}/resend", expect=202)
    await svc.deliver(session_completed("inv_1", 3_000, "pi_1", request_id=request["id"]))
    again = mail.of_kind("payment_request")
    assert len(again) == 2 and again[0].message["Message-ID"] != again[1].message["Message-ID"]
    [received] = mail.of_kind("payment_received")
    assert sorted(received.envelope_to) == ["books@example.com", "pay@example.com"]
    assert "$30.00" in received.part("plain") and "$70.00" in received.part("plain")

    await svc.deliver(session_completed("inv_1", 9_000, "pi_2"))
    [paid] = mail.of_kind("invoice_paid")
    assert sorted(paid.envelope_to) == ["books@example.com", "pay@example.com"]
    assert "$100.00" in paid.part("plain")
    [credit] = mail.of_kind("credit_issued")
    assert credit.envelope_to == ["pay@example.com"]
    assert "$20.00" in credit.part("plain")
    assert len(mail.of_kind("payment_received")) == 1  # the second capture left nothing
    for r in mail.received:
        # invoice_sent carries its PDF beside the two parts.
        assert r.message.get_content_type() == ("multipart/mixed" if r.kind == "invoice_sent"
                                                else "multipart/alternative")
        assert r.part("plain") and r.part("html")


async def test_twenty_duplicate_deliveries_two_workers_one_paid_notice(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    story = [session_completed("inv_1", 10_000, "pi_1"),
             payment_intent_succeeded("inv_1", 10_000, "pi_1")]
    deliveries = [signed(e) for e in story for _ in range(20)]
    workers = [subprocess.Popen([SETTLE, "worker"], env=process_env(svc.settings), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(2)]
    try:
        answers = await asyncio.gather(*(
            svc.client.post("/webhooks/stripe", data=raw, headers=headers)
            for raw, headers in deliveries))
        assert {a.status for a in answers} == {200}

        async def noticed() -> list[Any]:
            return mail.of_kind("invoice_paid")

        await wait_for(noticed, timeout=30)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(20)
    # What the two left queued or owed is done now: a second notice, were one owed, too.
    await drain(svc.settings, svc.db)
    assert len(mail.of_kind("invoice_paid")) == 1
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 10_000


async def test_mail_server_answering_451_delays_mail_never_payments(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()  # its invoice_sent mail, before the server turns away
    mail.answer = "451 4.3.0 Try again later"
    async with running_worker(svc.settings):
        await svc.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)

        async def refused_twice() -> bool:
            return mail.refused >= 2

        await wait_for(refused_twice, timeout=30)
        # The money was applied all the same.
        assert (await svc.get_invoice("inv_1"))["amount_paid"] == 4_000
        mail.answer = None

        async def delivered() -> list[Any]:
            return mail.of_kind("payment_received")

        [received] = await wait_for(delivered, timeout=30)
    assert set(mail.refused_ids) == {received.message["Message-ID"]}
    assert await svc.db.fetchval(
        "select status from outbox where key = 'mail:payment_received:pi_1'") == "done"


async def test_mail_server_answering_550_is_recorded_not_retried(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()  # its invoice_sent mail, before the server refuses
    mail.answer = "550 5.1.1 No such mailbox"
    await svc.deliver(session_completed("inv_1", 4_000, "pi_1"))
    row = await svc.db.fetchrow(
        "select status, reason, attempts from outbox where key = 'mail:payment_received:pi_1'")
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert "550" in row["reason"]
    assert mail.refused == 1
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 4_000


async def test_mail_server_down_never_blocks_payments(aiohttp_client: Any, svc: Service,
                                                     mail: MailServer) -> None:
    from worker.app import create_app

    down = replace(svc.settings, smtp_port=9)  # nothing listens there
    service = Service(await aiohttp_client(create_app(down)), down, svc.db)
    await service.invoice("inv_1", 10_000)
    async with running_worker(down):
        await service.deliver(session_completed("inv_1", 10_000, "pi_1"), settle=False)

        async def paid() -> bool:
            return (await service.get_invoice("inv_1"))["status"] == "paid"

        await wait_for(paid, timeout=20)

        async def deferred() -> bool:
            return bool(await svc.db.fetchval(
                "select attempts >= 2 from outbox where key like 'mail:invoice_paid:%'"))

        await wait_for(deferred, timeout=20)
    assert await svc.db.fetchval(
        "select status from outbox where key like 'mail:invoice_paid:%'") == "pending"


async def test_starttls_is_required_when_configured(aiohttp_client: Any, svc: Service,
                                                    mail: MailServer) -> None:
    from worker.app import create_app

    strict = replace(svc.settings, smtp_tls="starttls")  # the test server offers no STARTTLS
    service = Service(await aiohttp_client(create_app(strict)), strict, svc.db)
    await service.invoice("inv_1", 10_000)
    async with running_worker(strict):
        await service.deliver(session_completed("inv_1", 4_000, "pi_1"), settle=False)

        async def tried() -> Any:
            return await svc.db.fetchval(
                "select reason from outbox where key = 'mail:payment_received:pi_1'")

        reason = await wait_for(tried, timeout=20)
    assert "STARTTLS" in reason or "starttls" in reason.lower()
    assert mail.received == []  # never sent in the clear


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
async def test_login_when_a_username_is_set(aiohttp_client: Any, svc: Service) -> None:
    from aiosmtpd.smtp import AuthResult

    from tests.mailserver import start
    from worker.app import create_app

    logins: list[tuple[str, str]] = []

    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str,
                     data: Any) -> AuthResult:
        logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password == b"s3cret")

    handler, controller = start(authenticator=authenticate, auth_required=True,
                                auth_require_tls=False)
    try:
        login = replace(svc.settings, smtp_port=controller.port, smtp_username="settle",
                        smtp_password="s3cret")
        service = Service(await aiohttp_client(create_app(login)), login, svc.db)
        await service.invoice("inv_1", 10_000)
        await service.deliver(session_completed("inv_1", 4_000, "pi_1"))
    finally:
        controller.stop()
    assert set(logins) == {("settle", "s3cret")}
    assert sorted(r.kind for r in handler.received) == ["invoice_sent", "payment_received"]


async def scan_reminders(settings: Settings, svc: Service) -> None:
    """The reminder scan, once, as a worker's cron runs it."""
    from core.queue import queue_client
    from jobs.reminders import send_reminders

    queue = queue_client(settings.redis_url, settings.queue_name)
    try:
        await send_reminders(worker_ctx(settings, svc.db, queue))
    finally:
        await queue.aclose()


async def test_reminders_two_workers_one_mail_per_offset(paying: Service, mail: MailServer) -> None:
    svc = paying  # payment requests need a processor (§5)
    await svc.invoice("inv_due", 10_000)
    await svc.invoice("inv_cancelled", 10_000)
    await svc.invoice("inv_paid", 10_000)
    due = await svc.request("inv_due", 1_000)
    cancelled = await svc.request("inv_cancelled", 1_000)
    paid = await svc.request("inv_paid", 1_000)
    await svc.call("POST", f"/v1/payment-requests/{cancelled['id']}/cancel")
    await svc.deliver(session_completed("inv_paid", 1_000, "pi_1", request_id=paid["id"]),
                      settle=False)
    env = process_env(svc.settings, REMINDER_SCHEDULE="3s,4s", REMINDER_SCAN_SECONDS="1")
    workers = [subprocess.Popen([SETTLE, "worker"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(2)]
    try:
        async def two_reminders() -> bool:
            return len(mail.of_kind("reminder")) >= 2

        await wait_for(two_reminders, timeout=30)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(20)
    # Both offsets have passed: one more scan owes whatever is still due (a third, were
    # one owed), and the queue run dry sends it and any duplicate the two left behind.
    await scan_reminders(replace(svc.settings, reminder_schedule=(3, 4)), svc)
    await drain(svc.settings, svc.db)
    reminders = mail.of_kind("reminder")
    assert [r.message["X-Invoice-Id"] for r in reminders] == ["inv_due", "inv_due"]
    assert len({r.message["Message-ID"] for r in reminders}) == 2
    assert due["url"] in reminders[0].part("plain")
    assert (await svc.call("GET", f"/v1/payment-requests/{due['id']}"))["reminders_sent"] == 2
    for other in (cancelled, paid):
        assert (await svc.call("GET", f"/v1/payment-requests/{other['id']}"))[
            "reminders_sent"] == 0


async def test_a_bank_transfer_that_fails_tells_the_customer_once(
        paying: Service, mail: MailServer) -> None:
    """§7 payment_failed: an asynchronous payment that was on its way failed -> the customer,
    with the invoice page and what remains; once per payment, however often it is told."""
    svc = paying
    invoice = await svc.invoice("inv_1", 10_000, notify_emails=["books@example.com"])
    await svc.deliver(session_completed("inv_1", 3_000, "pi_card"))
    await svc.deliver(session_completed("inv_1", 7_000, "pi_1", payment_status="unpaid"))
    assert mail.of_kind("payment_failed") == []
    failed = session_completed("inv_1", 7_000, "pi_1", payment_status="unpaid",
                               event_type="checkout.session.async_payment_failed")
    await svc.deliver(failed, dict(failed, id="evt_again_" + failed["id"]))
    [told] = mail.of_kind("payment_failed")
    assert told.envelope_to == ["pay@example.com"]  # the customer, not notify_emails
    assert told.message["X-Invoice-Id"] == "inv_1"
    assert told.message["Message-ID"] == message_id("mail:payment_failed:pi_1",
                                                    "billing@localhost")
    assert "$70.00" in told.message["Subject"] and "N-inv_1" in told.message["Subject"]
    text, html = told.part("plain"), told.part("html")
    assert invoice["invoice_url"] in text and invoice["invoice_url"] in html
    for part in (text, html.replace("<strong>", "").replace("</strong>", "")):
        said = " ".join(part.split())
        assert "Your bank transfer of $70.00 for invoice N-inv_1 did not go through" in said
        assert "$70.00 remains to be paid" in said


async def test_a_card_declined_at_checkout_sends_no_payment_failed_mail(
        svc: Service, mail: MailServer) -> None:
    """A payment never on its way (no processing row before it failed) was refused while the
    customer was at Checkout, which said so: nothing to tell them by mail."""
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1", payment_status="unpaid",
                                        event_type="checkout.session.async_payment_failed"))
    assert (await svc.get_invoice("inv_1"))["payments"][0]["status"] == "failed"
    assert mail.of_kind("payment_failed") == []


async def test_the_credit_mail_says_what_happens_to_the_credit(
        svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 12_000, "pi_1"))
    [credit] = mail.of_kind("credit_issued")
    text = " ".join(credit.part("plain").split())
    assert "next invoices" not in text
    assert "It stays on your account" in text and '"Use my credit"' in text
