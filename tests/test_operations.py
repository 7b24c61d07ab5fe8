"""Operations (CONTRACT §8): reconcile, failed events and replay, the CLI, metrics."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from typing import Any

import pytest

from notify.render import message_id
from tests.conftest import FAST_RETRIES, ROOT, SETTLE, process_env, replace, wait_for, worker_ctx
from tests.mailserver import MailServer
from tests.service import Service
from sandbox.events import event, payment_intent_succeeded, session_completed
from sandbox.stripe import StripeStandIn


async def reconcile(svc: Service, invoice_id: str | None = None) -> dict[str, Any]:
    accepted = await svc.call("POST", "/v1/ops/reconcile",
                              {"invoice_id": invoice_id} if invoice_id else {}, expect=202)
    queued = await svc.call("GET", f"/v1/ops/jobs/{accepted['job_id']}")
    assert queued["status"] == "queued"
    await svc.settle()
    job = await svc.call("GET", f"/v1/ops/jobs/{accepted['job_id']}")
    assert job["status"] == "complete", job
    return job["result"]  # type: ignore[no-any-return]


async def test_missed_webhook_is_recovered_and_a_late_one_changes_nothing(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 3_000)
    opened = await paying.open_link(request["url"])
    session = standin.session_for_url(opened.headers["Location"])
    late_events = standin.pay(session["id"])  # paid at Stripe; the webhook never comes

    result = await reconcile(paying, "inv_1")
    assert result["checked"] == 1 and result["sessions_checked"] == 1
    [recovered] = result["recovered"]
    assert (recovered["payment_id"], recovered["session_id"]) == (session["payment_intent"],
                                                                  session["id"])
    invoice = await paying.get_invoice("inv_1")
    assert (invoice["amount_paid"], invoice["status"]) == (3_000, "partially_paid")
    assert invoice["payment_requests"][0]["status"] == "paid"

    await paying.deliver(*late_events)
    assert (await paying.get_invoice("inv_1"))["amount_paid"] == 3_000
    again = await reconcile(paying, "inv_1")
    assert (again["repaired"], again["recovered"]) == ([], [])


async def test_reconcile_every_open_invoice(paying: Service, standin: StripeStandIn) -> None:
    for invoice_id in ("inv_a", "inv_b"):
        invoice = await paying.invoice(invoice_id, 2_000)
        opened = await paying.open_link(invoice["pay_url"])
        standin.pay(standin.session_for_url(opened.headers["Location"])["id"])
    await paying.invoice("inv_draft", 2_000, send=False)
    result = await reconcile(paying)
    assert result["checked"] == 2 and len(result["recovered"]) == 2
    for invoice_id in ("inv_a", "inv_b"):
        assert (await paying.get_invoice(invoice_id))["status"] == "paid"
    assert len(await paying.db.fetch(
        "select 1 from outbox where key like 'mail:invoice_paid:%'")) == 2


async def test_drift_is_repaired_and_reported(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 12_000, "pi_1"))
    await svc.invoice("inv_2", 5_000, auto_apply_credit=False)
    # Rows altered behind the service's back.
    await svc.db.execute("update invoices set amount_paid = 7000 where id = 'inv_1'")
    await svc.db.execute("update credit_balances set balance = 99 where customer_id = 'cus_1'")
    result = await reconcile(svc, "inv_1")
    assert {(r["field"], r["was"], r["now"]) for r in result["repaired"]} == {
        ("amount_paid", 7_000, 10_000), ("credit_balance", 99, 2_000)}
    assert (await svc.get_invoice("inv_1"))["amount_paid"] == 10_000
    assert await svc.balance() == {"usd": 2_000}
    assert (await reconcile(svc, "inv_1"))["repaired"] == []


@pytest.mark.retry_base_seconds(FAST_RETRIES)
async def test_failed_event_is_listed_and_replayed_after_its_invoice_appears(
        svc: Service) -> None:
    orphan = payment_intent_succeeded("inv_late", 4_000, "pi_1")
    await svc.deliver(orphan)
    failed = await svc.call("GET", "/v1/ops/events?status=failed")
    [listed] = failed["events"]
    assert (listed["id"], listed["type"], listed["status"]) == (
        orphan["id"], "payment_intent.succeeded", "failed")
    assert listed["reason"] == "unknown invoice inv_late" and listed["attempts"] == 6
    assert listed["received_at"] and listed["processed_at"] and failed["next"] is None

    await svc.invoice("inv_late", 10_000)
    replayed = await svc.call("POST", f"/v1/ops/events/{orphan['id']}/replay", expect=202)
    assert replayed["status"] == "pending"
    await svc.settle()
    assert (await svc.get_invoice("inv_late"))["amount_paid"] == 4_000
    assert (await svc.event_status(orphan["id"]))["status"] == "processed"
    # Replaying a processed event changes nothing.
    again = await svc.call("POST", f"/v1/ops/events/{orphan['id']}/replay", expect=202)
    assert again["status"] == "processed"
    await svc.settle()
    assert (await svc.get_invoice("inv_late"))["amount_paid"] == 4_000
    missing = await svc.call("POST", "/v1/ops/events/evt_nope/replay", expect=404)
    assert missing["error"]["code"] == "not_found"


async def test_events_are_paginated_newest_first(svc: Service) -> None:
    sent = [event("customer.created", {"object": "customer"}) for _ in range(5)]
    await svc.deliver(*sent)
    seen: list[str] = []
    page = await svc.call("GET", "/v1/ops/events?limit=2")
    while True:
        seen += [e["id"] for e in page["events"]]
        if page["next"] is None:
            break
        page = await svc.call("GET", f"/v1/ops/events?limit=2&next={page['next']}")
    assert seen == [e["id"] for e in reversed(sent)]
    ignored = await svc.call("GET", "/v1/ops/events?status=ignored")
    assert len(ignored["events"]) == 5
    assert (await svc.call("GET", "/v1/ops/events?status=weird", expect=422))["error"][
        "code"] == "status_invalid"
    assert (await svc.call("GET", "/v1/ops/events?next=garbage", expect=422))["error"][
        "code"] == "cursor_invalid"


async def test_unknown_job_and_invoice(svc: Service) -> None:
    assert (await svc.call("GET", "/v1/ops/jobs/job_nope", expect=404))["error"]["code"] == \
        "not_found"
    assert (await svc.call("POST", "/v1/ops/reconcile", {"invoice_id": "nope"},
                           expect=404))["error"]["code"] == "not_found"


def cli(svc: Service, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SETTLE, *args], env=process_env(svc.settings), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.retry_base_seconds(FAST_RETRIES)
async def test_cli_against_a_running_service(svc: Service, mail: Any) -> None:
    orphan = payment_intent_succeeded("inv_1", 4_000, "pi_1")
    await svc.deliver(orphan)
    worker = subprocess.Popen([SETTLE, "worker"], env=process_env(svc.settings), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        listed = cli(svc, "events", "--status", "failed", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [e["id"] for e in json.loads(listed.stdout)["events"]] == [orphan["id"]]
        table = cli(svc, "events", "--status", "failed")
        assert table.stdout.splitlines()[0].split()[:4] == ["id", "type", "status", "attempts"]
        assert orphan["id"] in table.stdout

        await svc.invoice("inv_1", 10_000)
        replayed = cli(svc, "replay", orphan["id"])
        assert replayed.returncode == 0 and "queued again" in replayed.stdout

        async def applied() -> bool:
            return (await svc.get_invoice("inv_1"))["amount_paid"] == 4_000

        await wait_for(applied, timeout=30)
        await svc.db.execute("update invoices set amount_paid = 1 where id = 'inv_1'")
        reconciled = cli(svc, "reconcile", "--invoice", "inv_1", "--json")
        assert reconciled.returncode == 0, reconciled.stderr
        job = json.loads(reconciled.stdout)
        assert job["status"] == "complete"
        assert job["result"]["repaired"][0]["now"] == 4_000
        assert (await svc.call("GET", f"/v1/ops/jobs/{job['id']}"))["status"] == "complete"

        story = cli(svc, "invoice", "inv_1")
        assert story.returncode == 0
        for part in ("payment_intent.succeeded", "pi_1 (card) succeeded", "payment_received"):
            assert part in story.stdout
        assert cli(svc, "invoice", "nope").returncode == 4
        assert cli(svc, "reconcile", "--invoice", "nope").returncode == 4
        assert cli(svc, "events", "--status", "bogus").returncode == 2
        everything = cli(svc, "reconcile")
        assert everything.returncode == 0 and "checked 1 invoice(s)" in everything.stdout
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)


async def test_email_metrics_move(svc: Service) -> None:
    from tests.test_health_metrics import sample

    await svc.invoice("inv_1", 10_000)
    await svc.deliver(session_completed("inv_1", 10_000, "pi_1"))
    text = await (await svc.client.get("/metrics")).text()
    assert sample(text, "settle_emails_total", kind="invoice_paid", outcome="sent") == 1
    assert sample(text, "settle_events_processed_total", type="checkout.session.completed",
                  outcome="processed") == 1


async def test_scheduled_reconcile_runs_daily_by_default(svc: Service) -> None:
    from arq.cron import CronJob

    from jobs.reconcile import scheduled_reconcile
    from core.queue import queue_client
    from worker.runner import worker_options

    # Crons are named per QUEUE_NAME, so deployments sharing a Redis each run theirs.
    name = f"{svc.settings.queue_name}:cron:scheduled_reconcile"
    [cron] = [c for c in worker_options(svc.settings)["cron_jobs"]
              if isinstance(c, CronJob) and c.name == name]
    assert (cron.hour, cron.minute, cron.second) == ({0}, 0, 0)
    await svc.invoice("inv_1", 1_000)
    queue = queue_client(svc.settings.redis_url, svc.settings.queue_name)
    try:
        job_id = await scheduled_reconcile(worker_ctx(svc.settings, svc.db, queue))
    finally:
        await queue.aclose()
    await svc.settle()
    job = await svc.call("GET", f"/v1/ops/jobs/{job_id}")
    assert job["status"] == "complete" and job["result"]["checked"] == 1


OUTBOX_FIELDS = {"id", "kind", "key", "status", "reason", "attempts", "invoice_id",
                 "created_at", "done_at"}


async def test_failed_mail_is_listed_retried_and_delivered_once(svc: Service,
                                                                mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()  # its invoice_sent mail, before the mailbox is refused
    mail.answer = "550 5.1.1 No such mailbox"
    await svc.deliver(session_completed("inv_1", 4_000, "pi_1"))
    failed = await svc.call("GET", "/v1/ops/outbox?status=failed")
    [item] = failed["items"]
    assert set(item) == OUTBOX_FIELDS and failed["next"] is None
    assert (item["kind"], item["key"], item["status"], item["attempts"], item["invoice_id"]) == (
        "email", "mail:payment_received:pi_1", "failed", 1, "inv_1")
    assert "550" in item["reason"] and item["created_at"] and item["done_at"]

    mail.answer = None  # the mailbox was fixed
    retried = await svc.call("POST", f"/v1/ops/outbox/{item['id']}/retry", expect=202)
    assert retried == {"id": item["id"], "status": "pending"}
    assert (await svc.call("GET", "/v1/ops/outbox?status=failed"))["items"] == []
    await svc.settle()
    [received] = mail.of_kind("payment_received")
    # The same notification: the same key, so the same Message-ID.
    assert received.message["Message-ID"] == message_id("mail:payment_received:pi_1",
                                                        "billing@localhost")
    [done] = [i for i in (await svc.call("GET", "/v1/ops/outbox?status=done"))["items"]
              if i["id"] == item["id"]]
    assert (done["status"], done["reason"], done["attempts"]) == ("done", None, 1)

    # Retrying what is done changes nothing and sends nothing.
    again = await svc.call("POST", f"/v1/ops/outbox/{item['id']}/retry", expect=202)
    assert again == {"id": item["id"], "status": "done"}
    await svc.settle()
    assert len(mail.of_kind("payment_received")) == 1


async def test_outbox_is_paginated_newest_first_and_names_each_invoice(
        paying: Service, standin: StripeStandIn) -> None:
    await paying.invoice("inv_1", 10_000)
    request = await paying.request("inv_1", 3_000)
    await paying.open_link(request["url"])
    await paying.call("POST", f"/v1/payment-requests/{request['id']}/cancel")
    refunding = Service(paying.client, replace(paying.settings, overpayment_policy="refund"),
                        paying.db)
    await paying.invoice("inv_2", 1_000)
    await refunding.deliver(session_completed("inv_2", 1_500, "pi_2"))

    everything = [i for i in (await paying.call("GET", "/v1/ops/outbox"))["items"]]
    by_kind = {i["kind"]: i for i in reversed(everything)}
    assert by_kind["expire_checkout"]["invoice_id"] == "inv_1"
    assert by_kind["refund"]["invoice_id"] == "inv_2"
    assert {i["invoice_id"] for i in everything if i["kind"] == "email"} == {"inv_1", "inv_2"}
    assert all(i["status"] == "done" for i in everything)

    seen: list[int] = []
    page = await paying.call("GET", "/v1/ops/outbox?limit=2")
    while True:
        assert len(page["items"]) <= 2
        seen += [i["id"] for i in page["items"]]
        if page["next"] is None:
            break
        page = await paying.call("GET", f"/v1/ops/outbox?limit=2&next={page['next']}")
    assert seen == [i["id"] for i in everything] and len(seen) == len(set(seen)) >= 4
    stamps = [(i["created_at"], i["id"]) for i in everything]
    assert stamps == sorted(stamps, reverse=True)
    [refund] = (await paying.call("GET", "/v1/ops/outbox?kind=refund&status=done"))["items"]
    assert refund["key"] == "refund-excess:pi_2"
    assert (await paying.call("GET", "/v1/ops/outbox?kind=webhook"))["items"] == []


@pytest.mark.parametrize("query,code", [
    ("status=weird", "status_invalid"),
    ("status=processed", "status_invalid"),
    ("kind=%00", "kind_invalid"),
    ("kind=" + "e" * 65, "kind_invalid"),
    ("kind=%ED%A0%80", "kind_invalid"),
    ("next=garbage", "cursor_invalid"),
    ("next=" + base64.urlsafe_b64encode(b"2026-01-01T00:00:00+00:00|99999999999999999999")
     .decode(), "cursor_invalid"),
    ("next=" + base64.urlsafe_b64encode(b"0001-01-01T00:00:00+05:00|1").decode(),
     "cursor_invalid"),
    ("limit=0", "limit_invalid"),
    ("limit=101", "limit_invalid"),
    ("limit=abc", "limit_invalid"),
    ("limit=" + "9" * 5000, "limit_invalid"),
])
async def test_outbox_listing_refuses_bad_input(svc: Service, query: str, code: str) -> None:
    assert (await svc.call("GET", f"/v1/ops/outbox?{query}", expect=422))["error"][
        "code"] == code


@pytest.mark.parametrize("ident,status,code", [
    ("12345", 404, "not_found"),
    ("99999999999999999999999", 404, "not_found"),
    ("9223372036854775808", 404, "not_found"),
    ("abc", 422, "id_invalid"),
    ("-1", 422, "id_invalid"),
    ("1.5", 422, "id_invalid"),
    ("%00", 422, "id_invalid"),
])
async def test_retrying_an_unknown_or_malformed_outbox_id(svc: Service, ident: str, status: int,
                                                          code: str) -> None:
    answer = await svc.call("POST", f"/v1/ops/outbox/{ident}/retry", expect=status)
    assert answer["error"]["code"] == code


async def test_cli_lists_and_retries_a_failed_mail(svc: Service, mail: MailServer) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()  # its invoice_sent mail, before the mailbox is refused
    mail.answer = "550 5.1.1 No such mailbox"
    await svc.deliver(session_completed("inv_1", 4_000, "pi_1"))
    outbox_id = await svc.db.fetchval(
        "select id from outbox where key = 'mail:payment_received:pi_1'")

    listed = cli(svc, "outbox", "--status", "failed", "--json")
    assert listed.returncode == 0, listed.stderr
    [item] = json.loads(listed.stdout)["items"]
    assert (item["id"], item["status"], item["invoice_id"]) == (outbox_id, "failed", "inv_1")
    table = cli(svc, "outbox", "--status", "failed", "--kind", "email")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].split()[:4] == ["id", "kind", "status", "attempts"]
    assert "550" in table.stdout and "mail" not in cli(svc, "outbox", "--kind", "refund").stdout

    mail.answer = None
    retried = cli(svc, "retry", str(outbox_id))
    assert retried.returncode == 0 and "queued again" in retried.stdout, retried.stderr
    await svc.settle()
    assert len(mail.of_kind("payment_received")) == 1
    again = cli(svc, "retry", str(outbox_id), "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "done"

    assert cli(svc, "retry", "424242").returncode == 4
    assert cli(svc, "retry", "abc").returncode == 2
    assert cli(svc, "outbox", "--status", "bogus").returncode == 2
    assert cli(svc, "outbox", "--limit", "0").returncode == 1
    assert cli(svc, "outbox", "--next", "garbage").returncode == 1
