"""Outbound webhooks (CONTRACT §9) against real receivers on loopback: every message verified
with the `standardwebhooks` library, as the application would."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook

from core.queue import queue_client
from core.settings import Settings
from delivery import outbox
from handlers import messages
from jobs.outbox import deliver_outbox
from ledger.context import Known
from notify import webhook
from sandbox.events import payment_intent_succeeded
from tests.conftest import (LINKS, ROOT, replace, run_burst, running_worker, wait_for,
                            worker_ctx)
from tests.service import AUTH, Service
from worker.app import create_app
from worker.runner import WorkerSettings

MODELS: dict[str, type[messages.Message]] = {
    t: m for m in messages.MESSAGES for t in messages.event_types(m)}


@dataclass
class Receiver:
    """An application's endpoint: verifies each message with the current secret (and any
    other given), and answers as `answer` says."""

    secrets: list[str] = field(default_factory=list)
    answer: Callable[[int], Awaitable[int]] | None = None
    got: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    # The webhook-id of every attempt, answered 2xx or not.
    attempt_ids: list[str] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)
    requests: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        self.attempt_ids.append(request.headers["webhook-id"])
        raw = await request.read()
        for secret in self.secrets:  # every secret given must verify the message
            Webhook(secret).verify(raw, dict(request.headers))
        status = await self.answer(self.requests) if self.answer else 200
        if 200 <= status < 300:
            body = json.loads(raw)
            self.got.append(body)
            self.ids.append(request.headers["webhook-id"])
            self.signatures.append(request.headers["webhook-signature"])
        return web.json_response({}, status=status)


@pytest.fixture
def allowed(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    return replace(settings, outbound_allow_private=True, webhook_retry_schedule=(1, 1, 1))


@pytest.fixture
async def app(aiohttp_client: Any, allowed: Settings, db: asyncpg.Pool) -> Service:
    service = Service(await aiohttp_client(create_app(allowed)), allowed, db)
    await service.customer()
    return service


async def listen(aiohttp_server: Any, receiver: Receiver, path: str = "/hook") -> Receiver:
    web_app = web.Application()
    web_app.router.add_post(path, receiver.handle)
    server = await aiohttp_server(web_app)
    receiver.url = str(server.make_url(path))
    return receiver


async def register(svc: Service, endpoint_id: str, receiver: Receiver, **fields: Any) -> Any:
    endpoint = await svc.call("PUT", f"/v1/webhook-endpoints/{endpoint_id}",
                              {"url": receiver.url, **fields}, expect=201)
    receiver.secrets = [endpoint["secret"]]
    return endpoint


async def test_endpoints_api(app: Service, client: TestClient) -> None:
    url = "https://hooks.example.com/settle"
    endpoint = await app.call("PUT", "/v1/webhook-endpoints/ep_1",
                              {"url": url, "events": ["invoice.paid"]}, expect=201)
    assert endpoint["secret"].startswith("whsec_")
    assert len(base64.b64decode(endpoint["secret"][6:])) >= 24
    assert endpoint["events"] == ["invoice.paid"] and endpoint["disabled"] is False
    again = await app.call("PUT", "/v1/webhook-endpoints/ep_1",
                           {"url": url, "description": "books"}, expect=200)
    assert again["secret"] == endpoint["secret"] and again["description"] == "books"
    assert "payment.refunded" in again["events"] and "ping" not in again["events"]
    assert (await app.call("GET", "/v1/webhook-endpoints/ep_1"))["url"] == url
    listed = await app.call("GET", "/v1/webhook-endpoints")
    assert [e["id"] for e in listed["endpoints"]] == ["ep_1"] and listed["next"] is None
    rotated = await app.call("POST", "/v1/webhook-endpoints/ep_1/rotate-secret")
    assert rotated["secret"] != endpoint["secret"]
    for bad, code in (("ftp://x.example.com/", "url_invalid"), ("not a url", "url_invalid"),
                      ("https://", "url_invalid")):
        answer = await app.call("PUT", "/v1/webhook-endpoints/ep_2", {"url": bad}, expect=422)
        assert answer["error"]["code"] == code
    for events in (["invoice.eaten"], [], "invoice.paid"):
        answer = await app.call("PUT", "/v1/webhook-endpoints/ep_2",
                                {"url": url, "events": events}, expect=422)
        assert answer["error"]["code"] == "events_invalid"
    deleted = await app.client.delete("/v1/webhook-endpoints/ep_1", headers=AUTH)
    assert deleted.status == 204
    await app.call("GET", "/v1/webhook-endpoints/ep_1", expect=404)
    # Without OUTBOUND_ALLOW_PRIVATE: https only, and no loopback or private address.
    for bad in ("http://hooks.example.com/x", "https://127.0.0.1/x", "https://10.1.2.3/x",
                "https://169.254.169.254/latest", "https://[::1]/x", "https://localhost/x"):
        response = await client.put("/v1/webhook-endpoints/ep_3", json={"url": bad},
                                    headers=AUTH)
        assert response.status == 422, bad
        assert (await response.json())["error"]["code"] == "url_invalid"


async def test_a_story_arrives_signed_in_sequence(app: Service, aiohttp_server: Any) -> None:
    receiver = await listen(aiohttp_server, Receiver())
    await register(app, "ep_app", receiver)
    await app.invoice("inv_1", 5000)
    await app.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_cash", "amount": 2000, "method": "cash"}, expect=201)
    await app.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_check", "amount": 3500, "method": "check"}, expect=201)
    await app.call("POST", "/v1/invoices/inv_1/credit-notes",
                   {"id": "cn_1", "amount": 500}, expect=201)
    await app.call("POST", "/v1/payments/pay_check/refunds",
                   {"id": "re_1", "amount": 1000}, expect=202)
    await app.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 100, "currency": "usd", "reason": "sorry"},
                   expect=201)
    await app.invoice("inv_2", 100)
    await app.call("POST", "/v1/invoices/inv_2/void")
    await app.settle()

    types = [m["type"] for m in receiver.got]
    for expected in ("invoice.sent", "payment.succeeded", "invoice.partially_paid",
                     "invoice.paid", "customer.credit_changed", "credit_note.created",
                     "payment.refunded", "invoice.voided"):
        assert expected in types, (expected, types)
    for message in receiver.got:  # each as handlers.messages describes it
        MODELS[message["type"]].model_validate(message)
    assert len(set(receiver.ids)) == len(receiver.ids) and all(
        i.startswith("msg_") for i in receiver.ids)
    # Each invoice's messages carry a sequence that grows; the highest is its final state.
    about_1 = [m for m in receiver.got if m["type"].startswith("invoice.")
               and m["data"]["id"] == "inv_1"]
    sequences = [m["data"]["sequence"] for m in receiver.got
                 if m["type"] != "customer.credit_changed"
                 and (m["data"].get("invoice_id") or m["data"]["id"]) == "inv_1"]
    assert len(set(sequences)) == len(sequences)
    last = max(about_1, key=lambda m: m["data"]["sequence"])
    final = await app.get_invoice("inv_1")
    assert (last["data"]["status"], last["data"]["amount_paid"]) == \
        (final["status"], final["amount_paid"])
    succeeded = next(m for m in receiver.got if m["type"] == "payment.succeeded")
    assert succeeded["data"]["invoice_id"] == "inv_1"
    # The log: every message done, with the answer's status.
    log = await app.call("GET", "/v1/webhook-endpoints/ep_app/messages")
    assert {m["status"] for m in log["messages"]} == {"done"}
    assert {m["last_status_code"] for m in log["messages"]} == {200}
    assert {m["id"] for m in log["messages"]} == set(receiver.ids)


async def test_filters_and_disabled_endpoints_get_nothing_else(app: Service,
                                                               aiohttp_server: Any) -> None:
    paid_only = await listen(aiohttp_server, Receiver())
    off = await listen(aiohttp_server, Receiver())
    await register(app, "ep_paid", paid_only, events=["invoice.paid"])
    await register(app, "ep_off", off, disabled=True)
    await app.invoice("inv_1", 1000)
    await app.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_1", "amount": 1000, "method": "cash"}, expect=201)
    await app.settle()
    assert [m["type"] for m in paid_only.got] == ["invoice.paid"]
    assert off.requests == 0


async def test_a_failed_attempt_is_retried_under_the_same_id(app: Service,
                                                            aiohttp_server: Any) -> None:
    async def fail_first(n: int) -> int:
        return 500 if n == 1 else 200

    receiver = await listen(aiohttp_server, Receiver(answer=fail_first))
    await register(app, "ep_1", receiver)
    pinged = await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await app.settle()
    assert receiver.requests == 2 and receiver.ids == [pinged["message_id"]]
    # The failed attempt and its retry carried the same webhook-id.
    assert receiver.attempt_ids == [pinged["message_id"], pinged["message_id"]]
    assert receiver.got[0]["type"] == "ping"
    log = await app.call("GET", "/v1/webhook-endpoints/ep_1/messages")
    assert log["messages"][0]["attempts"] == 2 and log["messages"][0]["status"] == "done"


async def test_an_endpoint_that_never_succeeds_ends_failed_and_is_retryable(
        app: Service, aiohttp_server: Any) -> None:
    async def down(n: int) -> int:
        return 503

    receiver = await listen(aiohttp_server, Receiver(answer=down))
    await register(app, "ep_1", receiver)
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await app.settle()
    # Three delays in this test's schedule: four attempts, then failed.
    assert receiver.requests == 4
    log = await app.call("GET", "/v1/webhook-endpoints/ep_1/messages?status=failed")
    [message] = log["messages"]
    assert message["last_status_code"] == 503 and "HTTP 503" in message["last_error"]
    failed = await app.call("GET", "/v1/ops/outbox?status=failed&kind=webhook")
    assert [i["id"] for i in failed["items"]] == [message["outbox_id"]]
    receiver.answer = None
    await app.call("POST", f"/v1/ops/outbox/{message['outbox_id']}/retry", expect=202)
    await app.settle()
    assert len(receiver.got) == 1


async def test_410_disables_the_endpoint(app: Service, aiohttp_server: Any) -> None:
    async def gone(n: int) -> int:
        return 410

    receiver = await listen(aiohttp_server, Receiver(answer=gone))
    await register(app, "ep_1", receiver)
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await app.settle()
    assert receiver.requests == 1
    assert (await app.call("GET", "/v1/webhook-endpoints/ep_1"))["disabled"] is True
    await app.invoice("inv_1", 1000)
    await app.settle()
    assert receiver.requests == 1


async def test_a_hung_endpoint_times_out_and_is_tried_again(app: Service,
                                                           aiohttp_server: Any) -> None:
    release = asyncio.Event()

    async def hang_first(n: int) -> int:
        if n == 1:
            await release.wait()  # past the attempt's timeout
        return 200

    receiver = await listen(aiohttp_server, Receiver(answer=hang_first))
    await register(app, "ep_1", receiver)
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await app.settle()
    release.set()
    assert receiver.requests == 2 and len(receiver.got) == 1
    row = await app.db.fetchrow("select status, attempts, result from outbox")
    assert row["status"] == "done" and row["attempts"] == 2


async def test_during_a_rotation_both_secrets_sign(app: Service, aiohttp_server: Any) -> None:
    receiver = await listen(aiohttp_server, Receiver())
    old = (await register(app, "ep_1", receiver))["secret"]
    new = (await app.call("POST", "/v1/webhook-endpoints/ep_1/rotate-secret"))["secret"]
    receiver.secrets = [old, new]  # each alone verifies the message
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await app.settle()
    assert len(receiver.got) == 1 and len(receiver.signatures[0].split(" ")) == 2
    # Once the overlap has passed, only the new secret signs.
    await app.db.execute("update webhook_endpoints set previous_until = now() - interval '1s'")
    receiver.secrets = [new]
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await app.settle()
    assert len(receiver.got) == 2 and len(receiver.signatures[1].split(" ")) == 1


async def test_a_private_address_is_refused_at_sending_without_the_setting(
        app: Service, aiohttp_server: Any, allowed: Settings) -> None:
    receiver = await listen(aiohttp_server, Receiver())
    await register(app, "ep_1", receiver)
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await run_burst(replace(allowed, outbound_allow_private=False))
    assert receiver.requests == 0
    log = await app.call("GET", "/v1/webhook-endpoints/ep_1/messages")
    assert log["messages"][0]["last_error"] == "address not allowed"
    assert log["messages"][0]["last_status_code"] is None


class Gate:
    """A receiver's answer that holds every delivery until released, counting how many
    are held now and the most at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.now = 0
        self.most = 0

    async def answer(self, n: int) -> int:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await self.release.wait()
        finally:
            self.now -= 1
        return 200


async def test_a_slow_endpoint_never_holds_up_a_fast_one(
        app: Service, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("jobs.outbox.BUSY_DELAY", (0.02, 0.1))
    gate = Gate()
    slow_receiver = await listen(aiohttp_server, Receiver(answer=gate.answer))
    fast_receiver = await listen(aiohttp_server, Receiver())
    await register(app, "ep_slow", slow_receiver)
    await register(app, "ep_fast", fast_receiver)
    for _ in range(200):
        await app.call("POST", "/v1/webhook-endpoints/ep_slow/ping", expect=202)
    for _ in range(5):
        await app.call("POST", "/v1/webhook-endpoints/ep_fast/ping", expect=202)
    await app.invoice("inv_1", 1000)
    async with running_worker(app.settings):
        await wait_for(lambda: _count(fast_receiver, 6))
        # The slow one holds at most its share of places; nothing of it is delivered yet.
        assert gate.most <= 4 and slow_receiver.got == []
        gate.release.set()
        # Then the slow one gets all of its messages, each once, never more than 4 at once.
        await wait_for(lambda: _count(slow_receiver, 201), timeout=120)  # and invoice.sent
    assert gate.most <= 4
    assert len(set(slow_receiver.ids)) == len(slow_receiver.ids) == 201


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.got) >= n


async def test_many_slow_endpoints_leave_room_for_the_mail_and_the_books(
        app: Service, aiohttp_server: Any, mail: Any) -> None:
    # Six hung endpoints could hold 6 x PER_ENDPOINT = 24 deliveries, more than a worker's
    # 20 job places; the process's AT_ONCE keeps half of them for the mail and the books.
    assert webhook.AT_ONCE < WorkerSettings.max_jobs
    gate = Gate()
    hung = [await listen(aiohttp_server, Receiver(answer=gate.answer)) for _ in range(6)]
    for i, receiver in enumerate(hung):  # pings only: a filter none of the books' events match
        await register(app, f"ep_hung_{i}", receiver, events=["credit_note.created"])
        for _ in range(5):
            await app.call("POST", f"/v1/webhook-endpoints/ep_hung_{i}/ping", expect=202)
    await app.invoice("inv_1", 1000)
    # Attempts time out after 15 s, not the tests' 3 s: every hung attempt stays hung.
    patient = replace(app.settings, job_timeout_seconds=60)

    async def full() -> bool:
        return gate.now >= webhook.AT_ONCE

    async def told_paid() -> bool:
        return bool(mail.of_kind("invoice_paid"))

    async with running_worker(patient):
        await wait_for(full)
        await app.deliver(payment_intent_succeeded("inv_1", 1000, "pi_1"), settle=False)
        await wait_for(told_paid)
        # The capture was applied and its mail sent while every hung delivery was still
        # hung: no attempt had ended, and never more than AT_ONCE were under way.
        assert sum(r.requests for r in hung) == webhook.AT_ONCE and gate.most <= \
            webhook.AT_ONCE
        assert all(r.got == [] for r in hung)
        assert (await app.get_invoice("inv_1"))["status"] == "paid"
        gate.release.set()

        async def all_delivered() -> bool:
            return all(len(r.got) == 5 for r in hung)

        await wait_for(all_delivered, timeout=120)
    assert gate.most <= webhook.AT_ONCE
    assert all(len(set(r.ids)) == 5 for r in hung)


async def test_cli_lists_endpoints_and_messages_without_secrets(app: Service,
                                                                aiohttp_server: Any) -> None:
    from tests.test_operations import cli

    async def down(n: int) -> int:
        return 500

    receiver = await listen(aiohttp_server, Receiver(answer=down))
    endpoint = await register(app, "ep_cli", receiver)
    await app.call("POST", "/v1/webhook-endpoints/ep_cli/ping", expect=202)
    await app.settle()
    listed = cli(app, "endpoints")  # type: ignore[arg-type]
    assert listed.returncode == 0 and "ep_cli" in listed.stdout
    assert endpoint["secret"] not in listed.stdout
    as_json = json.loads(cli(app, "endpoints", "--json").stdout)  # type: ignore[arg-type]
    assert [e["id"] for e in as_json["endpoints"]] == ["ep_cli"]
    assert "secret" not in as_json["endpoints"][0]
    log = cli(app, "messages", "ep_cli", "--status", "failed")  # type: ignore[arg-type]
    assert log.returncode == 0 and "ping" in log.stdout and "HTTP 500" in log.stdout
    assert cli(app, "messages", "nope").returncode == 4  # type: ignore[arg-type]


async def test_the_processor_stories_arrive(paying: Service, standin: Any, aiohttp_server: Any,
                                            aiohttp_client: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 and 12's stories through the Stripe stand-in: requests, payments through
    links and Pay Now, supersession, cancellation, a refund, an asynchronous payment."""
    from sandbox.events import charge_refunded, session_completed
    from tests.test_payment_requests import session_of

    settings = replace(paying.settings, outbound_allow_private=True,
                       webhook_retry_schedule=(1,))
    svc = Service(await aiohttp_client(create_app(settings)), settings, paying.db)
    receiver = await listen(aiohttp_server, Receiver())
    await register(svc, "ep_app", receiver)
    await svc.invoice("inv_1", 10_000)
    first = await svc.request("inv_1", 3_000)
    await svc.deliver(*standin.pay((await session_of(svc, standin, first["url"]))["id"]))
    second = await svc.request("inv_1", 2_000)
    invoice = await svc.get_invoice("inv_1")
    pay_now = await session_of(svc, standin, invoice["pay_url"])
    await svc.deliver(*standin.pay(pay_now["id"]))
    paid = await svc.get_invoice("inv_1")
    big = next(p for p in paid["payments"] if p["amount"] == 7_000)
    await svc.deliver(charge_refunded(big["id"], 7_000, 1_000, invoice_id="inv_1"))
    await svc.invoice("inv_2", 500)
    third = await svc.request("inv_2", 500)
    await svc.call("POST", f"/v1/payment-requests/{third['id']}/cancel")
    await svc.deliver(session_completed("inv_2", 500, "pi_slow", payment_status="unpaid"))
    await svc.deliver(session_completed("inv_2", 500, "pi_slow", payment_status="unpaid",
                                        event_type="checkout.session.async_payment_failed"))
    await svc.settle()

    seen = {(m["type"], m["data"]["id"]) for m in receiver.got}
    for expected in (("payment_request.created", first["id"]),
                     ("payment_request.paid", first["id"]),
                     ("payment_request.superseded", second["id"]),
                     ("payment_request.cancelled", third["id"]),
                     ("invoice.partially_paid", "inv_1"), ("invoice.paid", "inv_1"),
                     ("invoice.reopened", "inv_1"), ("payment.refunded", big["id"]),
                     ("payment.succeeded", big["id"]), ("payment.processing", "pi_slow"),
                     ("payment.failed", "pi_slow")):
        assert expected in seen, (expected, sorted(seen))
    for message in receiver.got:
        MODELS[message["type"]].model_validate(message)
    # Links are the public ones, as the API writes them.
    created = next(m for m in receiver.got if m["type"] == "payment_request.created")
    assert created["data"]["url"] == first["url"]
    partially = next(m for m in receiver.got if m["type"] == "invoice.partially_paid")
    assert partially["data"]["pay_url"] == invoice["pay_url"]
    refunded = next(m for m in receiver.got if m["type"] == "payment.refunded")
    assert refunded["data"]["refunded"] == 1_000 and refunded["data"]["invoice_id"] == "inv_1"
    # Within one invoice, the later message has the higher sequence.
    about_1 = sorted((m for m in receiver.got if m["type"].startswith("invoice.")
                      and m["data"]["id"] == "inv_1"), key=lambda m: m["data"]["sequence"])
    assert [m["type"] for m in about_1] == ["invoice.sent", "invoice.partially_paid",
                                            "invoice.paid", "invoice.reopened"]


async def test_an_invoice_past_its_due_date_is_told_overdue_once(app: Service,
                                                                 aiohttp_server: Any) -> None:
    from jobs.reminders import send_reminders
    from tests.conftest import worker_ctx

    receiver = await listen(aiohttp_server, Receiver())
    await register(app, "ep_1", receiver, events=["invoice.overdue"])
    await app.invoice("inv_late", 1000, due_date="2020-01-31")
    await app.invoice("inv_draft", 1000, due_date="2020-01-31", send=False)
    await app.invoice("inv_future", 1000, due_date="2999-01-31")
    queue = queue_client(app.settings.redis_url, app.settings.queue_name)
    try:
        for _ in range(2):  # a second scan owes nothing more
            await send_reminders(worker_ctx(app.settings, app.db, queue))
            await app.settle()
    finally:
        await queue.aclose()
    assert [(m["type"], m["data"]["id"], m["data"]["status"]) for m in receiver.got] == [
        ("invoice.overdue", "inv_late", "overdue")]


async def test_make_runs_receiver_registers_itself_and_prints_verified_messages(
        app: Service, aiohttp_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from devtools import receiver as dev

    local = dev.Receiver()
    web_app = web.Application()
    web_app.router.add_post("/webhooks", local.handle)
    server = await aiohttp_server(web_app)
    api = str(app.client.make_url("")).rstrip("/")
    await dev.register(local, api, "test-token", str(server.make_url("/webhooks")))
    await app.invoice("inv_1", 1000)
    await app.settle()
    out = capsys.readouterr().out
    assert "registered as webhook endpoint dev-receiver" in out
    assert "webhook: invoice.sent" in out and "verified (1 signature(s))" in out
    assert "REFUSED" not in out


async def test_redirects_are_not_followed(app: Service, aiohttp_server: Any) -> None:
    target = await listen(aiohttp_server, Receiver())

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound(target.url)

    web_app = web.Application()
    web_app.router.add_post("/moved", moved)
    server = await aiohttp_server(web_app)
    await app.call("PUT", "/v1/webhook-endpoints/ep_1", {"url": str(server.make_url("/moved"))},
                   expect=201)
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await app.settle()
    assert target.requests == 0
    [message] = (await app.call("GET", "/v1/webhook-endpoints/ep_1/messages"))["messages"]
    assert (message["status"], message["last_status_code"]) == ("failed", 302)


async def test_a_name_that_resolves_to_loopback_is_refused_after_resolution(
        app: Service, allowed: Settings) -> None:
    # https and a name, so only the resolved address can refuse it.
    await app.call("PUT", "/v1/webhook-endpoints/ep_1", {"url": "https://localhost:9/hook"},
                   expect=201)
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    await run_burst(replace(allowed, outbound_allow_private=False))
    [message] = (await app.call("GET", "/v1/webhook-endpoints/ep_1/messages"))["messages"]
    # Failed at once (waiting would not make the address allowed), naming no address.
    assert (message["status"], message["attempts"]) == ("failed", 1)
    assert message["last_error"] == "address not allowed"


class PrivateResolver:
    """A resolver that finds every name at a private address (as a name whose DNS record
    was changed after the endpoint was registered would)."""

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        return [{"hostname": host, "host": "10.1.2.3", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


async def test_a_name_that_resolves_to_a_private_address_fails_at_once_naming_no_address(
        app: Service, allowed: Settings, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    await app.call("PUT", "/v1/webhook-endpoints/ep_1",
                   {"url": "https://hooks.example.com/settle"}, expect=201)
    await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    monkeypatch.setattr(webhook, "ThreadedResolver", PrivateResolver)
    with caplog.at_level("WARNING", logger="settle.outbox"):
        await run_burst(replace(allowed, outbound_allow_private=False))
    [message] = (await app.call("GET", "/v1/webhook-endpoints/ep_1/messages"))["messages"]
    assert (message["status"], message["attempts"]) == ("failed", 1)
    assert message["last_error"] == "address not allowed"
    [row] = await app.db.fetch("select status, reason from outbox where kind = 'webhook'")
    assert (row["status"], row["reason"]) == ("failed", "address not allowed")
    # The operator's log says which address.
    assert any("10.1.2.3" in str(getattr(r, "reason", "")) for r in caplog.records)


async def test_a_site_local_ipv6_url_is_refused_at_put(svc: Service) -> None:
    refused = await svc.call("PUT", "/v1/webhook-endpoints/ep_1",
                             {"url": "https://[fec0::1]/hook"}, expect=422)
    assert refused["error"]["code"] == "url_invalid"


# --- every change of an invoice's money is told, and the newest message is current -----


async def owed(db: asyncpg.Pool, prefix: str, subject: str) -> list[dict[str, Any]]:
    """The messages owed about `subject` (an invoice's id, or a customer's for
    customer.*) whose type starts with `prefix`, by sequence."""
    rows = await db.fetch(
        """select payload from outbox where kind = 'webhook' and payload ->> 'type' like $1
           order by (payload -> 'data' ->> 'sequence')::int""", prefix + "%")
    messages = [json.loads(r["payload"]) if isinstance(r["payload"], str) else r["payload"]
                for r in rows]
    return [m for m in messages if m["data"]["id"] == subject]


MONEY = ("status", "amount_paid", "amount_credited", "amount_credit_noted", "amount_remaining")


async def newest_is_current(app: Service, invoice_id: str) -> str:
    """The type of the newest invoice.* message owed about the invoice, once its money and
    status are shown to be what the API answers now."""
    newest = (await owed(app.db, "invoice.", invoice_id))[-1]
    invoice = await app.get_invoice(invoice_id)
    assert {k: newest["data"][k] for k in MONEY} == {k: invoice[k] for k in MONEY}
    return str(newest["type"])


async def test_every_change_of_an_invoices_money_owes_a_current_invoice_message(
        app: Service) -> None:
    await app.call("PUT", "/v1/webhook-endpoints/ep_1",
                   {"url": "https://hooks.example.com/settle"}, expect=201)
    await app.invoice("inv_1", 10_000)
    assert await newest_is_current(app, "inv_1") == "invoice.sent"
    steps: list[tuple[str, str, dict[str, Any], str]] = [
        ("/v1/invoices/inv_1/payments", "pay_1", {"amount": 2_000, "method": "cash"},
         "invoice.partially_paid"),
        # A second partial payment: partially_paid -> partially_paid.
        ("/v1/invoices/inv_1/payments", "pay_2", {"amount": 1_000, "method": "cash"},
         "invoice.partially_paid"),
        ("/v1/invoices/inv_1/credit-notes", "cn_1", {"amount": 500},
         "invoice.partially_paid"),
        ("/v1/payments/pay_2/refunds", "re_1", {"amount": 400}, "invoice.partially_paid"),
        ("/v1/invoices/inv_1/payments", "pay_3", {"amount": 6_900, "method": "cash"},
         "invoice.paid"),
        ("/v1/payments/pay_3/refunds", "re_2", {"amount": 900}, "invoice.reopened"),
    ]
    for path, ident, body, expected in steps:
        await app.call("POST", path, {"id": ident, **body}, expect=None)
        assert await newest_is_current(app, "inv_1") == expected, (ident, expected)
    sequences = [m["data"]["sequence"] for m in await owed(app.db, "invoice.", "inv_1")]
    assert sequences == sorted(set(sequences))


async def test_a_partial_payment_refunded_in_full_owes_invoice_sent_with_nothing_paid(
        app: Service) -> None:
    await app.call("PUT", "/v1/webhook-endpoints/ep_1",
                   {"url": "https://hooks.example.com/settle"}, expect=201)
    await app.invoice("inv_1", 5_000)
    await app.call("POST", "/v1/invoices/inv_1/payments",
                   {"id": "pay_1", "amount": 2_000, "method": "cash"}, expect=201)
    await app.call("POST", "/v1/payments/pay_1/refunds", {"id": "re_1", "amount": 2_000},
                   expect=202)
    # partially_paid -> sent: told as invoice.sent, carrying what is paid now (nothing).
    assert await newest_is_current(app, "inv_1") == "invoice.sent"
    assert [m["type"] for m in await owed(app.db, "invoice.", "inv_1")] == [
        "invoice.sent", "invoice.partially_paid", "invoice.sent"]


async def test_a_partial_payment_on_an_overdue_invoice_owes_invoice_partially_paid(
        app: Service) -> None:
    await app.call("PUT", "/v1/webhook-endpoints/ep_1",
                   {"url": "https://hooks.example.com/settle"}, expect=201)
    await app.invoice("inv_late", 5_000, due_date="2020-01-31")
    await app.call("POST", "/v1/invoices/inv_late/payments",
                   {"id": "pay_1", "amount": 2_000, "method": "cash"}, expect=201)
    assert await newest_is_current(app, "inv_late") == "invoice.partially_paid"
    newest = (await owed(app.db, "invoice.", "inv_late"))[-1]
    assert (newest["data"]["status"], newest["data"]["amount_paid"]) == ("overdue", 2_000)
    # Refunded in full, still overdue: invoice.sent (nothing paid), the status says overdue.
    await app.call("POST", "/v1/payments/pay_1/refunds", {"id": "re_1", "amount": 2_000},
                   expect=202)
    assert await newest_is_current(app, "inv_late") == "invoice.sent"


async def test_concurrent_credit_changes_in_two_currencies_give_the_higher_sequence_both(
        app: Service) -> None:
    """Credit balances are locked per currency, so two changes of one customer's credit run
    at once; the subject's sequence row serialises them, and the snapshot is read after it,
    so the higher sequence carries both balances."""
    from ledger.credit import change_credit

    await app.call("PUT", "/v1/webhook-endpoints/ep_1",
                   {"url": "https://hooks.example.com/settle"}, expect=201)
    first = await asyncpg.connect(app.settings.database_url)
    second = await asyncpg.connect(app.settings.database_url)
    try:
        in_first, in_second = first.transaction(), second.transaction()
        await in_first.start()
        await change_credit(first, "cus_1", "usd", 100, "adjustment", reason="usd",
                            known=Known(LINKS))
        await in_second.start()
        other = asyncio.create_task(
            change_credit(second, "cus_1", "eur", 200, "adjustment", reason="eur",
                          known=Known(LINKS)))
        pid = second.get_server_pid()

        async def second_waits() -> bool:
            return await app.db.fetchval(
                "select wait_event_type = 'Lock' from pg_stat_activity where pid = $1",
                pid) is True

        await wait_for(second_waits, timeout=10, interval=0.02)
        await in_first.commit()
        await other
        await in_second.commit()
    finally:
        await first.close()
        await second.close()
    told = await owed(app.db, "customer.credit_changed", "cus_1")
    assert [m["data"]["sequence"] for m in told] == [1, 2]
    assert told[-1]["data"]["credit_balance"] == {"eur": 200, "usd": 100}
    assert told[-1]["data"]["credit_balance"] == await app.balance()


# --- endpoint isolation: hung endpoints leave room, and a busy message loses no tries ------


async def test_three_hung_endpoints_leave_a_fast_one_its_messages_at_once(
        app: Service, aiohttp_server: Any) -> None:
    gate = Gate()
    hung = [await listen(aiohttp_server, Receiver(answer=gate.answer)) for _ in range(3)]
    fast = await listen(aiohttp_server, Receiver())
    for i, receiver in enumerate(hung):
        await register(app, f"ep_hung_{i}", receiver, events=["credit_note.created"])
        for _ in range(6):
            await app.call("POST", f"/v1/webhook-endpoints/ep_hung_{i}/ping", expect=202)
    await register(app, "ep_fast", fast, events=["credit_note.created"])
    # Attempts time out after 15 s, not the tests' 3 s: every hung attempt stays hung.
    patient = replace(app.settings, job_timeout_seconds=60)

    async def hung_hold_their_places() -> bool:
        # All the places hung endpoints may hold are held, and every other message to them
        # has been tried since and turned away (busy: due again later), so none is left
        # that could still come. Each hung endpoint holds one at least: one that holds none
        # may still take a place of the KEPT_FREE when its turned-away message comes again
        # (4 + 3 + 0 held becomes 4 + 3 + 1), so until then the count is not settled.
        untried = await app.db.fetchval(
            """select count(*) from outbox
               where endpoint_id like 'ep_hung_%' and status = 'pending'
                 and lease_until is null and next_attempt_at <= created_at""")
        return (gate.now >= webhook.AT_ONCE - webhook.KEPT_FREE and untried == 0
                and all(r.requests > 0 for r in hung))

    async def fast_got_all() -> bool:
        return len(fast.got) == 10

    async with running_worker(patient):
        await wait_for(hung_hold_their_places)
        held = gate.now
        for _ in range(10):
            await app.call("POST", "/v1/webhook-endpoints/ep_fast/ping", expect=202)
        # Well inside the hung attempts' 15 s: none of them has ended, and none freed a place.
        await wait_for(fast_got_all, timeout=8)
        assert gate.now == held == sum(r.requests for r in hung) == gate.most
        assert all(r.got == [] for r in hung)
        gate.release.set()

        async def all_delivered() -> bool:
            return all(len(r.got) == 6 for r in hung)

        await wait_for(all_delivered, timeout=60)
    assert len(set(fast.ids)) == 10


async def test_a_message_bounced_as_busy_for_long_keeps_its_tries_and_goes_once_there_is_room(
        app: Service, aiohttp_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Many more bounces than arq's max_tries (worker.runner), and a sweeper that would find
    # a dropped job only after ten minutes.
    monkeypatch.setattr("jobs.outbox.BUSY_DELAY", (0.005, 0.01))
    gate = Gate()
    receiver = await listen(aiohttp_server, Receiver(answer=gate.answer))
    await register(app, "ep_1", receiver, events=["credit_note.created"])
    for _ in range(webhook.PER_ENDPOINT + 1):
        await app.call("POST", "/v1/webhook-endpoints/ep_1/ping", expect=202)
    patient = replace(app.settings, job_timeout_seconds=60, inbox_sweep_after_seconds=600)
    bounces = 0
    record_busy = outbox.record_busy

    async def counted(*args: Any) -> bool:
        nonlocal bounces
        bounces += 1
        return await record_busy(*args)

    monkeypatch.setattr("delivery.outbox.record_busy", counted)

    async def bounced_past_its_tries() -> bool:
        return bounces > 3 * WorkerSettings.functions[1].max_tries  # type: ignore[attr-defined]

    async def all_delivered() -> bool:
        return len(receiver.got) == webhook.PER_ENDPOINT + 1

    async with running_worker(patient):
        await wait_for(bounced_past_its_tries, timeout=30)
        assert gate.now == webhook.PER_ENDPOINT and receiver.got == []
        gate.release.set()
        await wait_for(all_delivered, timeout=10)
    log = await app.call("GET", "/v1/webhook-endpoints/ep_1/messages")
    # A bounce is not an attempt.
    assert {(m["status"], m["attempts"]) for m in log["messages"]} == {("done", 1)}


# --- the SSRF guard: what is refused, at PUT and after name resolution -------------------

REFUSED = ("::ffff:127.0.0.1", "0.0.0.0", "::", "169.254.169.254", "2002:7f00:0001::",
           "2002:a9fe:a9fe::", "fd00::1", "100.64.0.1", "10.0.0.1", "127.0.0.1", "::1",
           # Teredo wrapping a documentation (non-public) client address.
           "2001:0:4136:e378:8000:63bf:3fff:fdd2",
           # Site-local (fec0::/10): Python's ipaddress calls it global.
           "fec0::1", "feff:ffff::1")
ALLOWED = ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946",
           # 6to4 wrapping a public IPv4 address (93.184.216.34).
           "2002:5db8:d822::")


@pytest.mark.parametrize("address", REFUSED)
def test_is_public_refuses_loopback_private_metadata_and_their_wrappings(address: str) -> None:
    from notify.addresses import is_public

    assert is_public(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", ALLOWED)
def test_is_public_allows_public_addresses(address: str) -> None:
    from notify.addresses import is_public

    assert is_public(ipaddress.ip_address(address)) is True


@pytest.mark.parametrize("address", REFUSED + ("localhost",))
async def test_the_guarded_resolver_refuses_what_resolves_to_a_non_public_address(
        address: str) -> None:
    resolver = webhook.GuardedResolver()
    try:
        with pytest.raises(webhook.Refused):
            await resolver.resolve(address, 443, socket.AF_UNSPEC)
    finally:
        await resolver.close()


@pytest.mark.parametrize("address", ALLOWED)
async def test_the_guarded_resolver_gives_a_public_address_to_connect_to(address: str) -> None:
    resolver = webhook.GuardedResolver()
    try:
        found = await resolver.resolve(address, 443, socket.AF_UNSPEC)
    finally:
        await resolver.close()
    assert {ipaddress.ip_address(item["host"]) for item in found} == {
        ipaddress.ip_address(address)}


async def test_a_refused_connection_is_undelivered_in_settles_words() -> None:
    """aiohttp's errors stop at the adapter: the job sees `webhook.Undelivered`."""
    with socket.socket() as closed:  # a port nothing listens on once this is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(webhook.Undelivered, match="^ClientConnectorError") as raised:
        await webhook.post(f"http://127.0.0.1:{port}/hook", "{}", {}, allow_private=True,
                           budget=5.0)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


async def test_an_endpoint_that_never_answers_is_undelivered_when_its_time_is_up() -> None:
    accepted = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()  # until the sender gives up and closes
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(webhook.Undelivered, match="^TimeoutError"):
            await webhook.post(f"http://127.0.0.1:{port}/hook", "{}", {}, allow_private=True,
                               budget=0.2)
    finally:
        server.close()
        await server.wait_closed()
    assert accepted.is_set()


@pytest.mark.parametrize("url", (
    "https://foo.localhost./x", "https://localhost./x", "https://FOO.LocalHost/x",
    "https://[2002:7f00:1::]/x", "https://[2002:a9fe:a9fe::]/latest",
    "https://[::ffff:10.0.0.1]/x", "https://hooks.example.com/a\x01b",
    "https://hooks.example.com/\x7f", "https://hooks.example.com/a b",
    "https://hooks.example.com/\tx", "https://hooks.example.com/x\n",
    "https://hooks.example.com/\u200bx", "https://hooks.example.com/\u0085",
    "\x00https://hooks.example.com/"))
def test_check_url_refuses_local_names_wrapped_addresses_and_control_characters(
        url: str) -> None:
    from core.errors import Invalid
    from delivery.endpoints import check_url

    with pytest.raises(Invalid) as refused:
        check_url(url.encode().decode("unicode_escape"), allow_private=False)
    assert refused.value.code == "url_invalid"


@pytest.mark.parametrize("url", (
    "https://hooks.example.com/settle", "https://93.184.216.34/x",
    "https://[2606:2800:220:1:248:1893:25c8:1946]:8443/x",
    # A name is not resolved at PUT: it is checked after resolution at each attempt.
    "https://private.example.com/x"))
def test_check_url_allows_public_https_urls(url: str) -> None:
    from delivery.endpoints import check_url

    assert check_url(url, allow_private=False) == url


async def test_put_refuses_a_url_with_control_characters_or_a_local_name_as_url_invalid(
        client: TestClient) -> None:
    for bad in ("https://hooks.example.com/a\x01b", "https://foo.localhost./x",
                "https://[2002:7f00:1::]/x"):
        response = await client.put("/v1/webhook-endpoints/ep_1",
                                    json={"url": bad.encode().decode("unicode_escape")},
                                    headers=AUTH)
        assert response.status == 422, bad
        assert (await response.json())["error"]["code"] == "url_invalid"


# --- links: written when the message is owed ----------------------------------------------


async def test_a_message_carries_its_real_links_when_owed(app: Service,
                                                          aiohttp_server: Any) -> None:
    """The snapshot is written with the public URL in the transaction of its change: the
    outbox row already holds the links the application gets, as the API writes them."""
    receiver = await listen(aiohttp_server, Receiver())
    await register(app, "ep_1", receiver)
    invoice = await app.invoice("inv_1", 5000)
    owed = await app.db.fetchrow(
        """select payload -> 'data' ->> 'invoice_url' as invoice_url,
                  payload -> 'data' ->> 'pay_url' as pay_url
           from outbox where kind = 'webhook' and payload ->> 'type' = 'invoice.sent'""")
    assert owed["invoice_url"] == invoice["invoice_url"]
    assert owed["invoice_url"].startswith(app.settings.public_url + "/i/")
    # No processor takes payments here: no pay link, in the row as in the API's answer.
    assert owed["pay_url"] is None and invoice["pay_url"] is None
    customer = await app.call("PUT", "/v1/customers/cus_1",
                              {"email": "pay@example.com", "name": "Ada"})
    await app.call("POST", "/v1/customers/cus_1/credit-adjustments",
                   {"id": "adj_1", "amount": 100, "currency": "usd", "reason": "sorry"},
                   expect=201)
    portal = await app.db.fetchval(
        """select payload -> 'data' ->> 'portal_url' from outbox
           where kind = 'webhook' and payload ->> 'type' = 'customer.credit_changed'""")
    assert portal == customer["portal_url"]
    await app.settle()
    sent = next(m for m in receiver.got if m["type"] == "invoice.sent")
    assert (sent["data"]["invoice_url"], sent["data"]["pay_url"]) == \
        (invoice["invoice_url"], invoice["pay_url"])


MIGRATION_0020 = ROOT / "migrations" / "0020_snapshot_links.sql"


async def test_a_message_owed_before_0020_is_sent_with_the_public_url(
        app: Service, aiohttp_server: Any, db: asyncpg.Pool) -> None:
    """Messages owed before snapshots carried their links had them written against the
    `settle-public-url` placeholder: migration 0020 marks those rows (and no other), and
    each is sent with the public URL in its links."""
    receiver = await listen(aiohttp_server, Receiver())
    await register(app, "ep_1", receiver)
    await app.invoice("inv_1", 5000)  # a message owed now, with its real links
    old = {"id": "inv_old", "invoice_url": "settle-public-url/i/tok_old",
           "pay_url": "settle-public-url/pay/pay_old",
           "payment_requests": [{"id": "pr_old", "url": "settle-public-url/pay/req_old"}],
           "number": "settle-public-url", "sequence": 1}
    row_id = await db.fetchval(
        """insert into outbox (kind, key, payload, endpoint_id)
           values ('webhook', 'webhook:msg_old', $1, 'ep_1') returning id""",
        json.dumps({"endpoint_id": "ep_1", "message_id": "msg_old", "type": "invoice.sent",
                    "timestamp": "2026-01-01T00:00:00+00:00", "data": old}))
    await db.execute(MIGRATION_0020.read_text())
    marked = await db.fetch(
        "select key from outbox where kind = 'webhook' and payload ? 'links_to_resolve'")
    assert [r["key"] for r in marked] == ["webhook:msg_old"]
    queue = queue_client(app.settings.redis_url, app.settings.queue_name)
    try:
        assert await deliver_outbox(worker_ctx(app.settings, db, queue), row_id) == "done"
    finally:
        await queue.aclose()
    [sent] = [m for m in receiver.got if m["data"]["id"] == "inv_old"]
    public = app.settings.public_url
    # No processor takes payments here: no pay link, as such a message was sent before 0020.
    assert sent["data"] == {**old, "invoice_url": f"{public}/i/tok_old", "pay_url": None,
                            "payment_requests": [{"id": "pr_old",
                                                  "url": f"{public}/pay/req_old"}]}
    assert set(sent) == {"type", "timestamp", "data"}
