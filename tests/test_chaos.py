"""Chaos: the real Procfile processes under load and faults, checked against a ground truth.

One `web` and two `worker` processes; 150 invoices with partial requests and
Pay Now sessions made through the Stripe and GoCardless stand-ins, the customer
choosing Card or Direct Debit on settle's pages (a third of the invoices are in
`gbp`: some paid by Direct Debit alone, some part by card and part by Direct
Debit, some failing before or after confirmation, charged back, and one chargeback
cancelled); 2,000 signed events, 1,250 of them Stripe's one to a body and 750
GoCardless's thin events in batches of 1 to 250, each body delivered 1-3 times, all
shuffled together, by 8 concurrent senders that retry until they get a 200.
Meanwhile a worker is SIGKILLed and restarted, Redis is flushed, the database
refuses connections for a few seconds, and the mail server answers 451 for a
while. At the end the books must equal what this test computed on its own (a
late failure or a chargeback takes its payment back and reopens its invoice; a
cancelled chargeback leaves it), each GoCardless payment must show its status and
what was reversed, and each "paid" notice must exist exactly once.

The ground truth does not depend on the order the events are applied in, which the
shuffle and the faults decide: no invoice with a payment taken back has an excess (so
which payment the excess came from never matters), and a payment taken back is the
only payment of its invoice, so it becomes paid exactly once whatever the order.

An outbound webhook endpoint (a receiver in this process that fails about a third
of its requests, whichever attempt they are) must at the end have every message
owed, one `webhook-id` per change (never two ids for one subject and sequence),
and for each invoice the highest-`sequence` invoice.* message received must carry
its final amount_paid, amount_remaining and status, as the API answers them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import asyncpg
import redis.asyncio as aioredis
from aiohttp import web
from standardwebhooks import Webhook

from processors.gocardless.events import MAX_BATCH
from sandbox.events import charge_refunded, event, signed
from sandbox.gocardless import GoCardlessStandIn, gocardless_event, new_id
from sandbox.stripe import StripeStandIn
from tests.conftest import (
    ROOT, SETTLE, free_port, process_env, replace, wait_for, wait_until_answers, with_stripe)
from tests.gocardless_service import gcstandin
from tests.mailserver import MailServer
from tests.test_webhook_intake import refuse_connections
from core.settings import Settings
from ledger.status import STATUS_SQL

INVOICES = 150
CUSTOMERS = 50
# Events in all, Stripe's and GoCardless's; of them GoCardless's (in batches).
MIN_EVENTS = 2_000
GOCARDLESS_MIN_EVENTS = 750
# Every third invoice is in gbp, paid by Direct Debit (some part by card).
GBP_EVERY = 3
SENDERS = 8
AUTH = {"Authorization": "Bearer test-token"}

__all__ = ["gcstandin"]  # fixtures


@dataclass
class Truth:
    """What the books must say, computed here from the scenario alone."""

    total: int
    currency: str = "usd"
    paid: int = 0
    credit: int = 0
    becomes_paid: bool = False
    customer: str = ""
    # Each GoCardless payment of the invoice: (its status, what was reversed of it).
    direct_debits: dict[str, tuple[str, int]] = field(default_factory=dict)

    @property
    def status(self) -> str:
        if self.paid >= self.total:
            return "paid"
        return "partially_paid" if self.paid else "sent"


@dataclass(frozen=True)
class Body:
    """What one delivery carries: a Stripe event (signed again at each attempt, since its
    signature holds a timestamp) or a GoCardless batch (its signature is the body's own)."""

    path: str
    ids: tuple[str, ...]
    stripe_event: dict[str, Any] | None = None
    raw: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def stripe(cls, item: dict[str, Any]) -> Body:
        return cls("/webhooks/stripe", (item["id"],), stripe_event=item)

    @classmethod
    def gocardless(cls, standin: GoCardlessStandIn, events: list[dict[str, Any]]) -> Body:
        raw, headers = standin.signed_batch(events)
        return cls("/webhooks/gocardless", tuple(e["id"] for e in events), raw=raw,
                   headers=headers)

    def signed(self) -> tuple[bytes, dict[str, str]]:
        return signed(self.stripe_event) if self.stripe_event is not None else (
            self.raw, self.headers)


@dataclass
class Deliveries:
    acks: list[float] = field(default_factory=list)
    # By route, what each attempt was answered (0: no answer).
    answers: dict[str, dict[int, int]] = field(default_factory=dict)
    accepted: set[str] = field(default_factory=set)


def owner_of(port: int, processes: dict[str, subprocess.Popen[bytes]]) -> str | None:
    """Which of these processes holds the TCP connection from local `port` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    for name, process in processes.items():
        fd_dir = f"/proc/{process.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                if os.readlink(f"{fd_dir}/{fd}") in inodes:
                    return name
            except OSError:
                continue
    return None


def change_of(message: dict[str, Any]) -> tuple[str, int]:
    """The subject and sequence a message tells (CONTRACT §9): a customer for customer.*,
    else the invoice it is about."""
    data = message["data"]
    if message["type"].startswith("customer."):
        return f"customer:{data['id']}", data["sequence"]
    return f"invoice:{data.get('invoice_id') or data['id']}", data["sequence"]


@dataclass
class FlakyReceiver:
    """The application's webhook endpoint: verifies every message, and fails about a third
    of its requests (500), first attempts and retries alike, by a seeded random; so
    messages are delivered on a retry, some only after several."""

    secret: str = ""
    rng: random.Random = field(default_factory=lambda: random.Random(915))
    failed: set[str] = field(default_factory=set)
    got: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every webhook-id seen (failed attempts included) for each (subject, sequence).
    ids_of_change: dict[tuple[str, int], set[str]] = field(default_factory=dict)
    requests: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        raw = await request.read()
        message = Webhook(self.secret).verify(raw, dict(request.headers))
        message_id = request.headers["webhook-id"]
        self.ids_of_change.setdefault(change_of(message), set()).add(message_id)
        if self.rng.random() < 1 / 3:
            self.failed.add(message_id)
            return web.Response(status=500)
        self.got[message_id] = message
        return web.Response(status=204)


def spawner(settings: Settings, port: int,
            gocardless: GoCardlessStandIn) -> Callable[[str], subprocess.Popen[bytes]]:
    """Starts the Procfile's processes (`settle web`, `settle worker`) for these settings,
    GoCardless's pointing at its stand-in."""
    env = process_env(settings, PORT=str(port), INBOX_SWEEP_AFTER_SECONDS="3",
                      JOB_TIMEOUT_SECONDS="5", OUTBOUND_ALLOW_PRIVATE="true",
                      # A third of all requests fail: twenty retries
                      # leave a message failed with odds of 3^-21.
                      WEBHOOK_RETRY_SCHEDULE=",".join(["1s"] * 20),
                      GOCARDLESS_ACCESS_TOKEN=gocardless.access_token,
                      GOCARDLESS_API_BASE=gocardless.base,
                      GOCARDLESS_WEBHOOK_SECRETS=gocardless.webhook_secret)

    def spawn(kind: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([SETTLE, kind], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return spawn


@dataclass
class Customer:
    """The customer on settle's pages (the link's choice, the invoice page's forms), and
    on the processors' own pages (the stand-ins, played directly)."""

    http: aiohttp.ClientSession
    origin: dict[str, str]
    stripe: StripeStandIn
    gocardless: GoCardlessStandIn

    async def _pay(self, path: str, form: dict[str, str]) -> str:
        async with self.http.post(path, data=form, headers=self.origin,
                                  allow_redirects=False) as r:
            assert r.status == 303, await r.text()
            return r.headers["Location"]

    async def by_card(self, pay_url: str) -> dict[str, Any]:
        """Card chosen on a pay link's page: its Stripe Checkout Session."""
        location = await self._pay(urlsplit(pay_url).path, {"way": "card"})
        return self.stripe.session_for_url(location)

    async def by_direct_debit(self, pay_url: str) -> str:
        """Direct Debit chosen on a pay link's page: its billing request's id."""
        return self._billing_request(
            await self._pay(urlsplit(pay_url).path, {"way": "direct_debit"}))

    async def another_amount_by_direct_debit(self, invoice_url: str, amount: int) -> str:
        """"Pay another amount" on the invoice page, by Direct Debit (`gbp`, two decimals)."""
        typed = f"{amount // 100}.{amount % 100:02d}"
        return self._billing_request(await self._pay(
            urlsplit(invoice_url).path + "/pay",
            {"what": "amount", "amount": typed, "way": "direct_debit"}))

    def _billing_request(self, location: str) -> str:
        flow = self.gocardless.flows[location.rstrip("/").rsplit("/", 1)[1]]
        return str(flow["links"]["billing_request"])

    def sets_up(self, billing_request: str, history: tuple[str, ...],
                events: list[dict[str, Any]]) -> str:
        """The customer sets up the Direct Debit; its payment then lives `history` at
        GoCardless; every event GoCardless makes of it is added to `events`."""
        events += self.gocardless.fulfil(billing_request)
        payment_id = str(
            self.gocardless.billing_requests[billing_request]["links"]["payment_request_payment"])
        for action in history:
            events += self.gocardless.move(payment_id, action)
        return payment_id


# A Direct Debit's life at GoCardless after it is set up, and what the books keep of it:
# (its moves, its status in settle, whether its amount is applied, whether it is taken back).
HISTORIES: dict[str, tuple[tuple[str, ...], str, bool, bool]] = {
    "collected": (("submitted", "confirmed", "paid_out"), "succeeded", True, False),
    "failed": (("submitted", "failed"), "failed", False, False),
    "late_failure": (("submitted", "confirmed", "late_failure"), "succeeded", True, True),
    "late_failure_settled": (("submitted", "confirmed", "late_failure", "late_failure_settled"),
                             "succeeded", True, True),
    "charged_back": (("submitted", "confirmed", "paid_out", "charged_back"),
                     "succeeded", True, True),
    "chargeback_cancelled": (("submitted", "confirmed", "paid_out", "charged_back",
                              "chargeback_cancelled"), "succeeded", True, False),
}


def gbp_plan(rng: random.Random, count: int) -> list[tuple[str, str]]:
    """(how each `gbp` invoice is paid, its Direct Debit's history): the cases that must be
    there (payments failing late, charged back, failing early, one chargeback cancelled),
    the rest drawn."""
    plan = [("part_by_direct_debit", "chargeback_cancelled"),
            *[("direct_debit", h) for h in ["late_failure"] * 4 + ["late_failure_settled"] * 4
              + ["charged_back"] * 2 + ["failed"] * 3]]
    while len(plan) < count:
        plan.append(rng.choice([("direct_debit", "collected"), ("card_and_direct_debit", "collected"),
                                ("both_overpaid", "collected"), ("nothing", "collected")]))
    rng.shuffle(plan)
    return plan


async def pay_in_gbp(customer: Customer, how: str, history_name: str, truth: Truth,
                     invoice: dict[str, Any], request_url: str, part: int,
                     stripe_events: list[dict[str, Any]],
                     gocardless_events: list[dict[str, Any]]) -> None:
    """A `gbp` invoice paid as `how` says; its truth, with what each payment leaves."""
    history, status, applied, taken_back = HISTORIES[history_name]
    debits: list[tuple[str, int]] = []  # (billing request, amount)
    if how == "direct_debit":  # Pay Now, by Direct Debit: the whole invoice
        debits.append((await customer.by_direct_debit(invoice["pay_url"]), truth.total))
    elif how == "part_by_direct_debit":  # the partial request's link, by Direct Debit
        debits.append((await customer.by_direct_debit(request_url), part))
    elif how == "card_and_direct_debit":  # the request by card, the rest on the invoice page
        session = await customer.by_card(request_url)
        stripe_events += customer.stripe.pay(session["id"])
        truth.paid += session["amount_total"]
        debits.append((await customer.another_amount_by_direct_debit(
            invoice["invoice_url"], truth.total - part), truth.total - part))
    elif how == "both_overpaid":  # the request by Direct Debit and Pay Now by card
        debits.append((await customer.by_direct_debit(request_url), part))
        session = await customer.by_card(invoice["pay_url"])
        stripe_events += customer.stripe.pay(session["id"])
        truth.paid += session["amount_total"]
    else:  # the customer went to GoCardless's page and left it
        await customer.by_direct_debit(invoice["pay_url"])
        return
    for billing_request, amount in debits:
        payment_id = customer.sets_up(billing_request, history, gocardless_events)
        truth.paid += amount if applied else 0
        truth.becomes_paid = truth.becomes_paid or truth.paid >= truth.total
        if taken_back:
            # The truth holds in any order only when nothing else pays this invoice.
            assert len(debits) == 1 and truth.paid == amount <= truth.total, how
            truth.paid -= amount
        truth.direct_debits[payment_id] = (status, amount if taken_back else 0)
    truth.becomes_paid = truth.becomes_paid or truth.paid >= truth.total
    truth.credit = max(0, truth.paid - truth.total)
    truth.paid -= truth.credit


def pay_in_usd(customer: Customer, kind: str, truth: Truth, partial: dict[str, Any],
               pay_now: dict[str, Any], invoice_id: str, rng: random.Random,
               events: list[dict[str, Any]]) -> None:
    """A `usd` invoice's Stripe sessions paid (or refunded) as `kind` says."""
    paid_sessions = {"partial": [partial], "pay_now": [pay_now], "both": [partial, pay_now],
                     "nothing": [], "partial_refund": [partial],
                     "pay_now_refund": [pay_now]}[kind]
    for session in paid_sessions:
        events += customer.stripe.pay(session["id"])
        truth.paid += session["amount_total"]
        # The other events Stripe sends about a payment, which settle does not act on.
        for noise in ("payment_intent.created", "charge.succeeded", "charge.updated"):
            events.append(event(noise, {"object": noise.split(".")[0],
                                        "metadata": {"invoice_id": invoice_id}}))
    truth.becomes_paid = truth.paid >= truth.total
    credit = max(0, truth.paid - truth.total)
    truth.paid -= credit
    if kind.endswith("_refund"):
        session = paid_sessions[0]
        # Stripe never refunds more than was captured.
        amount = session["amount_total"]
        first = rng.randrange(1, amount // 2)
        last = rng.randrange(first + 1, amount + 1)
        for cumulative in (first, last):  # cumulative: delivered in any order
            events.append(charge_refunded(session["payment_intent"],
                                          session["amount_total"], cumulative,
                                          invoice_id=invoice_id))
        truth.paid -= last
    truth.credit = credit


async def scenario(customer: Customer,
                   rng: random.Random) -> tuple[dict[str, Truth], list[Body]]:
    """Invoices, links and sessions through the API and the pages; the bodies their
    payments' events are delivered in (Stripe's one by one, GoCardless's in batches)."""
    http = customer.http
    truths: dict[str, Truth] = {}
    events: list[dict[str, Any]] = []
    gocardless_events: list[dict[str, Any]] = []
    plan = iter(gbp_plan(rng, INVOICES // GBP_EVERY))
    for c in range(CUSTOMERS):
        async with http.put(f"/v1/customers/cus_{c}", json={"email": f"c{c}@example.com"},
                            headers=AUTH) as r:
            assert r.status in (200, 201)
    for i in range(INVOICES):
        invoice_id, customer_id = f"inv_{i}", f"cus_{i % CUSTOMERS}"
        currency = "gbp" if i % GBP_EVERY == GBP_EVERY - 1 else "usd"
        total = rng.randrange(5_000, 20_000)
        truth = Truth(total, currency, customer=customer_id)
        truths[invoice_id] = truth
        body = {"customer_id": customer_id, "number": f"C-{i}", "currency": currency,
                "total": total, "auto_apply_credit": False, "allow_partial": currency == "gbp"}
        async with http.put(f"/v1/invoices/{invoice_id}", json=body, headers=AUTH) as r:
            assert r.status == 201
        async with http.post(f"/v1/invoices/{invoice_id}/send", headers=AUTH) as r:
            invoice = await r.json()
        # Room left for a Direct Debit of the rest (GoCardless collects at least 1.00).
        part = rng.randrange(1_000, total - 1_000)
        async with http.post(f"/v1/invoices/{invoice_id}/payment-requests",
                             json={"amount": part, "to": "p@example.com"}, headers=AUTH) as r:
            request = await r.json()
        if currency == "gbp":
            how, history = next(plan)
            await pay_in_gbp(customer, how, history, truth, invoice, request["url"], part,
                             events, gocardless_events)
            continue
        partial = await customer.by_card(request["url"])
        pay_now = await customer.by_card(invoice["pay_url"])
        kind = rng.choice(["partial", "pay_now", "both", "nothing", "partial_refund",
                           "pay_now_refund"])
        pay_in_usd(customer, kind, truth, partial, pay_now, invoice_id, rng, events)
    print(f"\nchaos: {len(events)} Stripe events about payments, the rest of "
          f"{MIN_EVENTS - GOCARDLESS_MIN_EVENTS} other types; {len(gocardless_events)} "
          f"GoCardless events about payments, the rest of {GOCARDLESS_MIN_EVENTS} other types")
    while len(events) < MIN_EVENTS - GOCARDLESS_MIN_EVENTS:
        events.append(event("customer.updated", {"object": "customer", "metadata": {}}))
    return truths, [Body.stripe(e) for e in events] + gocardless_bodies(
        customer.gocardless, gocardless_events, rng)


def gocardless_bodies(standin: GoCardlessStandIn, events: list[dict[str, Any]],
                      rng: random.Random) -> list[Body]:
    """GoCardless's events with the others it sends (mandates, payouts: settle records and
    ignores them), shuffled, in batches: one of 250 (the most GoCardless sends), one of 1,
    one of 50, the rest of 1 to 50."""
    events = list(events)
    while len(events) < GOCARDLESS_MIN_EVENTS:
        events.append(gocardless_event("mandates", "active", mandate=new_id("MD"))
                      if len(events) % 2 else
                      gocardless_event("payouts", "paid", payout=new_id("PO")))
    rng.shuffle(events)
    sizes = iter([MAX_BATCH, 1, 50])
    bodies = []
    while events:
        size = next(sizes, None) or rng.randint(1, 50)
        bodies.append(Body.gocardless(standin, events[:size]))
        events = events[size:]
    assert max(len(b.ids) for b in bodies) == MAX_BATCH
    return bodies


async def send_all(base: str, bodies: list[Body], rng: random.Random,
                   faults: Any) -> Deliveries:
    deliveries = [b for b in bodies for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    queue: asyncio.Queue[Body] = asyncio.Queue()
    for item in deliveries:
        queue.put_nowait(item)
    result = Deliveries()
    done = 0

    async def sender(http: aiohttp.ClientSession) -> None:
        nonlocal done
        while not queue.empty():
            item = queue.get_nowait()
            for attempt in range(200):  # like Stripe and GoCardless: retry until acknowledged
                raw, headers = item.signed()
                started = time.perf_counter()
                try:
                    async with http.post(item.path, data=raw, headers=headers) as r:
                        status = r.status
                except aiohttp.ClientError:
                    status = 0
                answered = result.answers.setdefault(item.path, {})
                answered[status] = answered.get(status, 0) + 1
                if status == 200:
                    result.acks.append(time.perf_counter() - started)
                    result.accepted.update(item.ids)
                    break
                assert status in (0, 503), f"unexpected answer {status}"
                await asyncio.sleep(0.05 * min(attempt + 1, 10))
            done += 1
            await faults(done, len(deliveries))

    async with aiohttp.ClientSession(base) as http:
        await asyncio.gather(*(sender(http) for _ in range(SENDERS)))
    assert done == len(deliveries)
    return result


async def api_invoices(base: str) -> dict[str, dict[str, Any]]:
    """Every invoice as `GET /v1/invoices` answers it now, by id."""
    invoices: dict[str, dict[str, Any]] = {}
    page: str | None = ""
    async with aiohttp.ClientSession(base) as http:
        while page is not None:
            query = {"limit": "100", **({"next": page} if page else {})}
            async with http.get("/v1/invoices", params=query, headers=AUTH) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
            invoices.update({i["id"]: i for i in answer["invoices"]})
            page = answer["next"]
    return invoices


async def test_chaos_books_equal_the_ground_truth(settings: Settings, db: asyncpg.Pool,
                                                  redis: aioredis.Redis, mail: MailServer,
                                                  standin: StripeStandIn,
                                                  gcstandin: GoCardlessStandIn,
                                                  aiohttp_server: Any) -> None:
    rng = random.Random(20261121)
    receiver = FlakyReceiver()
    receiving = web.Application()
    receiving.router.add_post("/hooks", receiver.handle)
    hook_url = str((await aiohttp_server(receiving)).make_url("/hooks"))
    sandbox = standin
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = replace(with_stripe(settings, api_key=sandbox.api_key, api_base=sandbox.base),
                       public_url=base)
    spawn = spawner(settings, port, gcstandin)
    processes = {"web": spawn("web"), "worker-1": spawn("worker"), "worker-2": spawn("worker")}
    try:
        async with aiohttp.ClientSession(base) as http:
            await wait_until_answers(http, "/readyz")
            async with http.put("/v1/webhook-endpoints/app", json={"url": hook_url},
                                headers=AUTH) as r:
                assert r.status == 201
                receiver.secret = (await r.json())["secret"]
            customer = Customer(http, {"Origin": base}, sandbox, gcstandin)
            truths, bodies = await scenario(customer, rng)

        fired: set[str] = set()
        largest = max(bodies, key=lambda b: len(b.ids))
        refused: list[int] = []

        async def faults(done: int, total: int) -> None:
            share = done / total
            if share > 0.15 and "kill" not in fired:
                fired.add("kill")
                processes["worker-1"].send_signal(signal.SIGKILL)
                processes["worker-1"].wait(10)
                processes["worker-1"] = spawn("worker")
            if share > 0.30 and "mail" not in fired:
                fired.add("mail")
                mail.answer = "451 4.3.0 Try again later"
                asyncio.get_running_loop().call_later(6, setattr, mail, "answer", None)
            if share > 0.45 and "flush" not in fired:
                fired.add("flush")
                await redis.flushdb()
            if share > 0.60 and "database" not in fired:
                fired.add("database")
                await refuse_connections(settings.database_url, allow=False)
                # GoCardless's largest batch (sent again: a duplicate is harmless) finds
                # nothing to record it in: refused, to be sent again like any 503.
                async with aiohttp.ClientSession(base) as http:
                    raw, headers = largest.signed()
                    async with http.post(largest.path, data=raw, headers=headers) as r:
                        refused.append(r.status)
                await asyncio.sleep(3)
                await refuse_connections(settings.database_url, allow=True)
            if share > 0.75 and "mid-mail" not in fired:
                fired.add("mid-mail")
                await kill_mid_mail()

        async def kill_mid_mail() -> None:
            """SIGKILL the worker whose mail the server has accepted and is saying goodbye
            to (QUIT answered late): the moment a message is sent but may be unrecorded."""
            mail.quit_delay = 1.0
            try:
                async def quitting() -> tuple[str, int] | None:
                    return mail.quitting[0] if mail.quitting else None

                _, port = await wait_for(quitting, timeout=30, interval=0.01)
                workers = {name: p for name, p in processes.items() if name.startswith("worker")}
                name = owner_of(port, workers)
                assert name is not None, "no worker holds the mail connection"
                processes[name].send_signal(signal.SIGKILL)
                processes[name].wait(10)
                processes[name] = spawn("worker")
            finally:
                mail.quit_delay = 0.0

        started = time.perf_counter()
        delivered = await send_all(base, bodies, rng, faults)
        sent_at = time.perf_counter()
        assert fired == {"kill", "mail", "flush", "database", "mid-mail"}
        assert refused == [503]

        check = await asyncpg.connect(settings.database_url)
        try:
            async def settled() -> bool:
                row = await check.fetchrow(
                    """select (select count(*) from events where status = 'pending') as events,
                              (select count(*) from outbox where status = 'pending') as owed""")
                return row["events"] == 0 and row["owed"] == 0

            try:
                await wait_for(settled, timeout=180, interval=0.5)
            except AssertionError:
                left = await check.fetch(
                    """select kind, count(*) as n, max(attempts) as attempts, min(reason) as reason
                       from outbox where status = 'pending' group by kind""")
                events_left = await check.fetchval(
                    "select count(*) from events where status = 'pending'")
                raise AssertionError(f"not settled: {events_left} events pending, outbox "
                                     f"{[dict(r) for r in left]}; receiver "
                                     f"{receiver.requests} requests") from None
            settle_seconds = time.perf_counter() - sent_at

            # Never lost: every acknowledged event is recorded, and applied or ignored.
            recorded = {r["event_id"]: r["status"] for r in await check.fetch(
                "select event_id, status from events")}
            assert delivered.accepted == {i for b in bodies for i in b.ids} == set(recorded)
            failed = await check.fetch(
                "select type, reason, attempts from events where status = 'failed' limit 5")
            assert set(recorded.values()) <= {"processed", "ignored"}, failed

            invoices = {r["id"]: r for r in await check.fetch(
                "select id, total, amount_paid, amount_credited from invoices")}
            balances = {(r["customer_id"], r["currency"]): r["balance"] for r in await check.fetch(
                "select customer_id, currency, balance from credit_balances")}
            direct_debits = {r["id"]: (r["status"], r["reversed"]) for r in await check.fetch(
                "select id, status, reversed from payments where source = 'gocardless'")}
            owed_messages = {r["id"]: r["status"] for r in await check.fetch(
                "select payload ->> 'message_id' as id, status from outbox where kind = 'webhook'")}
            final_status = {r["id"]: r["status"] for r in await check.fetch(
                f"select i.id, {STATUS_SQL} as status from invoices i")}
        finally:
            await check.close()
        answered = await api_invoices(base)

        for invoice_id, truth in truths.items():
            row = invoices[invoice_id]
            assert row["amount_paid"] == truth.paid, invoice_id
            status = "paid" if row["total"] == row["amount_paid"] + row["amount_credited"] else (
                "partially_paid" if row["amount_paid"] else "sent")
            assert status == truth.status, invoice_id
        for owner in {(t.customer, t.currency) for t in truths.values()}:
            expected = sum(t.credit for t in truths.values()
                           if (t.customer, t.currency) == owner)
            assert balances.get(owner, 0) == expected, owner
        # Each Direct Debit as its history left it: failed, or received (and what of it
        # the bank took back: all of it after a late failure or a chargeback, nothing once
        # the chargeback was cancelled).
        assert direct_debits == {p: seen for t in truths.values()
                                 for p, seen in t.direct_debits.items()}
        assert {s for s, _ in direct_debits.values()} == {"succeeded", "failed"}
        assert any(taken for _, taken in direct_debits.values())
        paid_notices = [r.message["X-Invoice-Id"]
                        for r in mail.notifications_of_kind("invoice_paid")]
        assert sorted(paid_notices) == sorted(i for i, t in truths.items() if t.becomes_paid)
        # One worker was killed while the server held its mail: at most one message
        # (accepted, not yet recorded) went out twice, under one Message-ID (§7).
        assert mail.resends() <= 1

        # Every message owed was delivered; the receiver saw no id that was not owed.
        assert set(owed_messages.values()) == {"done"}
        assert set(receiver.got) == set(owed_messages) and receiver.failed
        # One webhook-id per change: never two ids for one subject and sequence, failed
        # attempts included, and as many changes as messages owed.
        assert {change: ids for change, ids in receiver.ids_of_change.items()
                if len(ids) > 1} == {}
        assert len(receiver.ids_of_change) == len(owed_messages)
        assert {change_of(m) for m in receiver.got.values()} == set(receiver.ids_of_change)
        # For each invoice, the invoice.* message with the highest sequence is its final state,
        # its money as well as its status.
        latest: dict[str, dict[str, Any]] = {}
        for message in receiver.got.values():
            data = message["data"]
            if message["type"].startswith("invoice.") and (
                    data["id"] not in latest or data["sequence"] > latest[data["id"]]["sequence"]):
                latest[data["id"]] = data
        assert set(latest) == set(truths)
        shown = ("amount_paid", "amount_remaining", "status")
        assert {i: {k: d[k] for k in shown} for i, d in latest.items()} == \
            {i: {k: answered[i][k] for k in shown} for i in truths}
        assert {i: d["status"] for i, d in latest.items()} == \
            {i: final_status[i] for i in truths}
        # One sequence number per message about an invoice: never two alike.
        per_invoice: dict[str, list[int]] = {}
        for message in receiver.got.values():
            data = message["data"]
            if not message["type"].startswith("customer."):
                per_invoice.setdefault(data.get("invoice_id") or data["id"], []).append(
                    data["sequence"])
        assert all(len(set(s)) == len(s) for s in per_invoice.values())
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()

    acks = sorted(delivered.acks)
    deliveries = sum(n for answered in delivered.answers.values() for n in answered.values())
    batches = [b for b in bodies if b.stripe_event is None]
    print(f"\nchaos: {len(bodies) - len(batches)} Stripe events and "
          f"{sum(len(b.ids) for b in batches)} GoCardless events in {len(batches)} batches; "
          f"{deliveries} deliveries ({deliveries - len(bodies)} duplicates or retries; "
          f"answers {delivered.answers}); "
          f"ack p50 {statistics.median(acks) * 1000:.1f} ms, "
          f"p99 {acks[int(len(acks) * 0.99)] * 1000:.1f} ms; "
          f"sent in {sent_at - started:.1f} s, settled {settle_seconds:.1f} s after; "
          f"{sum(t.becomes_paid for t in truths.values())} paid notices; "
          f"{len(receiver.got)} webhook messages in {receiver.requests} requests "
          f"({len(receiver.failed)} refused at least once)")
