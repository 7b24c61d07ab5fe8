"""The books' invariants hold after every step of any story (CONTRACT §4), in PostgreSQL.

Hypothesis plays a merchant, a customer and Stripe at once against the real
ledger: processor captures (by Checkout, its PaymentIntent's event
duplicating it, some held back so that a refund report arrives first),
asynchronous payments (processing, then succeeded or failed), manual
payments, payment requests, merchant refunds (answered, refused, or made by
Stripe with its webhook before the answer), refunds made and failed at the
processor (reported by `charge.refunded` listing them or, as Stripe does by
default, listing none; failures by `refund.failed`, `refund.updated` and
`charge.refund.updated`), credit notes both ways, credit adjustments and
credit applied to invoices, invoices voided, disputes (the bank taking part of
a payment back, and giving it back when won), interleaved in any order, with
processor events
delivered again late. Each event carries its moment on Stripe's clock, a
second apart. After every step:

- each invoice's kept sums equal what its records say, and never exceed it;
- its credit notes never add up to more than its total, and no payment
  request is active once it is paid;
- the customer's credit balance is the sum of its ledger entries, never below
  zero, and the last entry's `balance_after`;
- no credit is returned twice: what an invoice's credit notes gave back and what
  voiding it returned never exceed what went into it (payments and credit), and
  voiding returns only the applied credit its credit notes did not;
- no money appears or vanishes: what the invoices hold, plus the credit
  balance, plus what went back or is on its way back, equals what was
  received plus what credit notes and adjustments gave.

And a credit note's post-payment part is never more than what the invoice's
amount_paid + amount_credited held when it was issued, less what earlier
credit notes gave back.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import DomainError, RetryLater
from core.processor import Processor
from core.tx import Books
from ledger import credit, credit_notes, invoices, refunds, requests
from ledger.context import Known
from ledger.inbox import Policy
from ledger.payments import ManualPayment, apply_facts, record_manual
from processors.stripe.events import interpret, moment
from sandbox.events import (
    charge_refunded,
    dispute_event,
    payment_intent_succeeded,
    refund_event,
    refund_object,
    session_completed,
)

STEPS = ["capture", "held", "duplicate", "async_start", "async_end", "manual", "request",
         "external_refund", "fail_refund", "merchant_refund", "made", "answer", "refuse",
         "credit_note", "adjust", "apply_credit", "void", "dispute", "win", "late"]
# What a story is made of: every step, money arriving and refunds more often (most steps
# need a payment to act on).
STORY_STEPS = STEPS + ["capture", "capture", "external_refund", "merchant_refund", "made",
                       "made", "answer", "credit_note", "credit_note", "request", "void"]
# How Stripe tells that a refund did not happen, and with which status.
FAILURES = [("refund.failed", "failed"), ("refund.updated", "failed"),
            ("refund.updated", "canceled"), ("charge.refund.updated", "failed"),
            ("charge.refund.updated", "canceled")]


async def nothing(_: list[int]) -> None:
    return None


class Configured:
    """The processor as payment requests see it: configured, refusing no amount."""

    name = "stripe"
    configured = True

    def takes(self, currency: str) -> bool:
        return True

    def amount_refused(self, amount: int, currency: str) -> str | None:
        return None

    def unit_refused(self, amount: int, currency: str) -> str | None:
        return None


@dataclass
class Stripe:
    """What Stripe holds: each payment's refunds, as its events would list them, and its
    clock (one event a second)."""

    captured: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # settle's own refunds Stripe made, by settle's refund id.
    made: dict[str, dict[str, Any]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)
    # Events Stripe sent that have not arrived yet (a capture's, so its refunds come first).
    held: list[dict[str, Any]] = field(default_factory=list)
    # Asynchronous payments still processing: payment id -> (invoice, amount).
    processing: dict[str, tuple[str, int]] = field(default_factory=dict)
    clock: itertools.count[int] = field(default_factory=lambda: itertools.count(1_780_000_000))
    # Disputes the bank acted on: dispute id -> (payment id, amount), and the ones won.
    disputes: dict[str, tuple[str, int]] = field(default_factory=dict)
    won: set[str] = field(default_factory=set)

    def now(self) -> int:
        return next(self.clock)

    def charge_event(self, invoice_id: str, payment_id: str, listed: bool) -> dict[str, Any]:
        refunds = self.refunds.setdefault(payment_id, [])
        live = sum(r["amount"] for r in refunds if r["status"] not in ("failed", "canceled"))
        return charge_refunded(payment_id, self.captured[payment_id], live,
                               invoice_id=invoice_id, created=self.now(),
                               refunds=[dict(r) for r in refunds] if listed else [])

    def room(self, payment_id: str) -> int:
        """What Stripe would still refund or dispute of a payment: a disputed charge is
        not refundable while the bank holds the amount."""
        listed = self.refunds.get(payment_id, [])
        held = sum(amount for dispute, (paid, amount) in self.disputes.items()
                   if paid == payment_id and dispute not in self.won)
        return self.captured.get(payment_id, 0) - held - sum(
            r["amount"] for r in listed if r["status"] not in ("failed", "canceled"))

    def refund(self, payment_id: str, amount: int,
               settle_refund: str | None = None) -> dict[str, Any]:
        made = refund_object(f"re_{uuid.uuid4().hex[:12]}", payment_id, amount, "succeeded",
                             settle_refund=settle_refund, created=self.now())
        self.refunds.setdefault(payment_id, []).append(made)
        if settle_refund is not None:
            self.made[settle_refund] = made
        return made


@dataclass
class World:
    books: Books
    suffix: str
    invoices: list[str]
    customer: str
    policy: str
    stripe: Stripe = field(default_factory=Stripe)
    payment_invoice: dict[str, str] = field(default_factory=dict)
    counter: int = 0

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}_{self.suffix}_{self.counter}"


async def deliver(world: World, event: dict[str, Any]) -> None:
    async with world.books.pool.acquire() as conn:
        try:
            async with conn.transaction():
                await apply_facts(conn, interpret(event["type"], event),
                                  Policy(world.policy),  # type: ignore[arg-type]
                                  known=Known(world.books))
        except RetryLater:
            pass  # the inbox would try again later: the "late" step does
    world.stripe.sent.append(event)


async def answer(world: World, row: asyncpg.Record) -> None:
    """Stripe's answer to settle's own refund: the refund it made (now, or earlier), or a
    refusal when the payment has no room left for it."""
    stripe = world.stripe
    made = stripe.made.get(row["id"])
    async with world.books.transaction() as conn:
        if made is None and stripe.room(row["payment_id"]) < row["amount"]:
            await refunds.refused(conn, row["id"], "amount exceeds what can be refunded",
                                  known=Known(world.books))
            return
        if made is None:
            made = stripe.refund(row["payment_id"], row["amount"], settle_refund=row["id"])
        await refunds.answered(conn, row["id"], made["id"], made["status"],
                               made_at=moment(made["created"]), known=Known(world.books))


async def asked(world: World, *, made: bool | None = None) -> list[asyncpg.Record]:
    """settle's own refunds through the processor still waiting for its answer (of which
    Stripe did, or did not, make the refund already)."""
    rows = await world.books.pool.fetch(
        """select r.* from refunds r join payments p on p.id = r.payment_id
           where r.invoice_id = any($1) and r.status = 'requested'
             and p.source <> 'manual' order by r.id""", world.invoices)
    return [r for r in rows if made is None or (r["id"] in world.stripe.made) == made]


async def remaining(world: World, invoice_id: str) -> int:
    left: int = await world.books.pool.fetchval(
        """select greatest(0, total - amount_paid - amount_credited - amount_credit_noted)
           from invoices where id = $1""", invoice_id)
    return left


async def step(world: World, kind: str, data: st.DataObject) -> None:
    stripe = world.stripe
    pool = world.books.pool
    invoice_id = data.draw(st.sampled_from(world.invoices))
    amount = data.draw(st.integers(1, 6_000))
    if kind == "capture":
        payment_id = world.new_id("pi")
        stripe.captured[payment_id] = amount
        world.payment_invoice[payment_id] = invoice_id
        event = session_completed(invoice_id, amount, payment_id)
        if data.draw(st.booleans()):
            await deliver(world, event)
        else:  # on its way: what Stripe says of its refunds may arrive first
            stripe.held.append(event)
    elif kind == "held" and stripe.held:
        event = data.draw(st.sampled_from(stripe.held))
        stripe.held.remove(event)
        await deliver(world, event)
    elif kind == "duplicate" and stripe.captured:
        # payment_intent.succeeded for a payment Checkout already reported (or will).
        payment_id = data.draw(st.sampled_from(sorted(stripe.captured)))
        await deliver(world, payment_intent_succeeded(world.payment_invoice[payment_id],
                                                      stripe.captured[payment_id], payment_id))
    elif kind == "async_start":
        payment_id = world.new_id("pi")
        stripe.processing[payment_id] = (invoice_id, amount)
        world.payment_invoice[payment_id] = invoice_id
        await deliver(world, session_completed(invoice_id, amount, payment_id,
                                               payment_status="unpaid"))
    elif kind == "async_end" and stripe.processing:
        payment_id = data.draw(st.sampled_from(sorted(stripe.processing)))
        invoice_id, amount = stripe.processing.pop(payment_id)
        if data.draw(st.booleans()):
            stripe.captured[payment_id] = amount
            await deliver(world, session_completed(
                invoice_id, amount, payment_id,
                event_type="checkout.session.async_payment_succeeded"))
        else:
            await deliver(world, session_completed(
                invoice_id, amount, payment_id, payment_status="unpaid",
                event_type="checkout.session.async_payment_failed"))
    elif kind == "manual":
        payment_id = world.new_id("m")
        world.payment_invoice[payment_id] = invoice_id
        try:
            await record_manual(world.books, invoice_id, ManualPayment(
                payment_id, amount, "check", None, None, {"amount": amount}))
        except DomainError as refused:
            assert refused.code == "invoice_not_open"  # voided
    elif kind == "request":
        left = await remaining(world, invoice_id)
        if left > 0 and data.draw(st.booleans()):  # mostly one the invoice can take
            amount = data.draw(st.integers(1, left))
        try:
            await requests.create_request(world.books, invoice_id, requests.RequestInput(
                amount, "payer@example.com", [], [], replace=data.draw(st.booleans())),
                [cast(Processor, Configured())])
        except DomainError as refused:
            assert refused.code in ("invoice_not_open", "amount_exceeds_remaining",
                                    "active_request_exists")
    elif kind == "external_refund" and stripe.captured:
        payment_id = data.draw(st.sampled_from(sorted(stripe.captured)))
        if stripe.room(payment_id) > 0:
            stripe.refund(payment_id, data.draw(st.integers(1, stripe.room(payment_id))))
            await deliver(world, stripe.charge_event(world.payment_invoice[payment_id],
                                                     payment_id, data.draw(st.booleans())))
    elif kind == "fail_refund":
        live = [r for rs in stripe.refunds.values() for r in rs
                if r["status"] in ("succeeded", "pending")]
        if live:
            refund = data.draw(st.sampled_from(live))
            event_type, refund["status"] = data.draw(st.sampled_from(FAILURES))
            await deliver(world, refund_event(event_type, refund, created=stripe.now()))
    elif kind == "merchant_refund":
        paid = await pool.fetch(
            "select id from payments where invoice_id = any($1) and status = 'succeeded'",
            world.invoices)
        if paid:
            payment_id = data.draw(st.sampled_from(sorted(r["id"] for r in paid)))
            try:
                await refunds.request_refund(world.books, payment_id, refunds.RefundRequest(
                    world.new_id("rf"), amount, None, {"amount": amount}),
                    {"stripe": cast(Processor, Configured())})
            except DomainError as refused:
                assert refused.code == "amount_exceeds_refundable"
    elif kind == "made":
        # Stripe makes one of settle's refunds; its webhook arrives before the answer.
        waiting = [r for r in await asked(world, made=False)
                   if stripe.room(r["payment_id"]) >= r["amount"]]
        if waiting:
            row = data.draw(st.sampled_from(waiting))
            stripe.refund(row["payment_id"], row["amount"], settle_refund=row["id"])
            await deliver(world, stripe.charge_event(row["invoice_id"], row["payment_id"],
                                                     data.draw(st.booleans())))
    elif kind == "answer":
        waiting = await asked(world)
        if waiting:
            row = data.draw(st.sampled_from(waiting))
            await answer(world, row)
            if row["id"] in stripe.made and data.draw(st.booleans()):
                # and Stripe's webhook about it
                await deliver(world, stripe.charge_event(row["invoice_id"], row["payment_id"],
                                                         data.draw(st.booleans())))
    elif kind == "refuse":
        # The processor refuses a refund it did not make.
        waiting = await asked(world, made=False)
        if waiting:
            row = data.draw(st.sampled_from(waiting))
            async with world.books.transaction() as conn:
                await refunds.refused(conn, row["id"], "card_declined",
                                      known=Known(world.books))
    elif kind == "credit_note":
        before = await pool.fetchrow(
            """select amount_paid + amount_credited as returnable,
                      (select coalesce(sum(post_payment_amount), 0) from credit_notes
                        where invoice_id = $1) as given_back
               from invoices where id = $1""", invoice_id)
        note_id = world.new_id("cn")
        if data.draw(st.booleans()):  # often more than remains: a post-payment part
            amount = await remaining(world, invoice_id) + data.draw(st.integers(1, 3_000))
        try:
            await credit_notes.issue(world.books, invoice_id, credit_notes.CreditNoteInput(
                note_id, amount, None, data.draw(st.booleans()), {"a": amount}))
        except DomainError as refused:
            assert refused.code in ("amount_exceeds_creditable", "invoice_not_open")
        else:
            post = await pool.fetchval(
                "select post_payment_amount from credit_notes where id = $1", note_id)
            assert post <= before["returnable"] - before["given_back"], (post, dict(before))
    elif kind == "adjust":
        change = data.draw(st.integers(-3_000, -1) | st.integers(1, 3_000))
        try:
            await credit.adjust(world.books, world.customer, credit.Adjustment(
                world.new_id("adj"), change, "usd", "property", {"a": change}))
        except DomainError as refused:
            assert refused.code == "insufficient_credit"
    elif kind == "apply_credit":
        try:
            await invoices.apply_credit(world.books, invoice_id, None)
        except DomainError as refused:
            assert refused.code in ("no_credit", "invoice_not_open")
    elif kind == "void":
        try:
            await invoices.void_invoice(world.books, invoice_id)
        except DomainError as refused:
            assert refused.code == "invoice_has_payments"
    elif kind == "dispute" and stripe.captured:
        # The customer's bank takes part of a payment back; its news may come twice.
        payment_id = data.draw(st.sampled_from(sorted(stripe.captured)))
        if stripe.room(payment_id) > 0:
            dispute_id = world.new_id("dp")
            taken = data.draw(st.integers(1, stripe.room(payment_id)))
            stripe.disputes[dispute_id] = (payment_id, taken)
            await deliver(world, dispute_event("charge.dispute.funds_withdrawn", payment_id,
                                               taken, dispute_id=dispute_id))
    elif kind == "win" and set(stripe.disputes) - stripe.won:
        # A dispute won: the bank gives the amount back. (The news arriving before the
        # taking's is tests/test_reversals.py's; here the "late" step only repeats it.)
        dispute_id = data.draw(st.sampled_from(sorted(set(stripe.disputes) - stripe.won)))
        payment_id, taken = stripe.disputes[dispute_id]
        stripe.won.add(dispute_id)
        await deliver(world, dispute_event("charge.dispute.funds_reinstated", payment_id,
                                           taken, dispute_id=dispute_id, status="won"))
    elif kind == "late" and stripe.sent:
        # An event Stripe sent earlier, delivered again now (a retry, or late).
        await deliver(world, data.draw(st.sampled_from(stripe.sent)))


async def check(world: World) -> None:
    pool = world.books.pool
    for row in await pool.fetch(
            """select i.total, i.amount_paid, i.amount_credited, i.amount_credit_noted,
                 (select coalesce(sum(applied - refund_from_paid - reversal_from_paid), 0)
                   from payments
                   where invoice_id = i.id and status = 'succeeded') as paid_by_payments,
                 (select coalesce(-sum(amount), 0) from credit_entries
                   where invoice_id = i.id and kind = 'applied') as credited_by_entries,
                 (select coalesce(sum(pre_payment_amount), 0) from credit_notes
                   where invoice_id = i.id) as noted_by_notes,
                 (select coalesce(sum(amount), 0) from credit_notes
                   where invoice_id = i.id) as noted_total,
                 (select coalesce(sum(post_payment_amount), 0) from credit_notes
                   where invoice_id = i.id)
                 + (select coalesce(sum(amount), 0) from credit_entries
                     where invoice_id = i.id and kind = 'applied' and amount > 0)
                   as given_back,
                 (select coalesce(sum(applied), 0) from payments
                   where invoice_id = i.id and status = 'succeeded')
                 + (select coalesce(-sum(amount), 0) from credit_entries
                     where invoice_id = i.id and kind = 'applied' and amount < 0) as put_in,
                 (select coalesce(-sum(amount), 0) from credit_entries
                   where invoice_id = i.id and kind = 'applied' and amount < 0) as credited_in,
                 (select coalesce(sum(amount), 0) from credit_entries
                   where invoice_id = i.id and kind = 'applied' and amount > 0)
                   as returned_by_void,
                 (select coalesce(sum(from_credit), 0) from credit_notes
                   where invoice_id = i.id) as from_credit,
                 (select count(*) from payment_requests r
                   where r.invoice_id = i.id and r.status = 'active'
                     and i.total - i.amount_paid - i.amount_credited
                         - i.amount_credit_noted <= 0) as paid_with_active_request
               from invoices i where i.id = any($1)""", world.invoices):
        assert row["noted_total"] <= row["total"]
        assert row["paid_with_active_request"] == 0
        assert row["amount_paid"] == row["paid_by_payments"]
        assert row["amount_credited"] == row["credited_by_entries"]
        assert row["amount_credit_noted"] == row["noted_by_notes"]
        assert 0 <= row["amount_paid"] + row["amount_credited"] + row["amount_credit_noted"] \
            <= row["total"]
        # No credit is returned twice (§4): what credit notes gave back and what voiding
        # returned to the balance never exceed what went into the invoice, from payments
        # and from credit.
        assert row["given_back"] <= row["put_in"], dict(row)
        assert row["returned_by_void"] <= row["credited_in"] - row["from_credit"], dict(row)
    # The refund rule takes back only what refunds under it moved (§4): never more than
    # the external and merchant refunds Stripe made of the payment (a credit note's or
    # an overpayment's refund belongs to its purpose, whatever order the reports came in).
    for payment in await pool.fetch(
            """select id, refund_from_credit + refund_from_paid + refund_unrecovered as taken
               from payments where invoice_id = any($1) and source <> 'manual'""",
            world.invoices):
        under_rule = sum(r["amount"] for r in world.stripe.refunds.get(payment["id"], [])
                         if not r["metadata"].get("settle_refund", "rf_").startswith(
                             ("refund-excess:", "cn:")))
        assert payment["taken"] <= under_rule, (payment["id"], payment["taken"], under_rule)
    # The credit ledger and the money, in one round trip.
    money = ledger = await pool.fetchrow(
        """select
             coalesce((select balance from credit_balances
                        where customer_id = $2 and currency = 'usd'), 0) as balance,
             coalesce((select sum(amount) from credit_entries where customer_id = $2), 0)
               as entries,
             (select balance_after from credit_entries where customer_id = $2
               order by id desc limit 1) as last,
             (select coalesce(sum(amount_paid + amount_credited), 0) from invoices
               where id = any($1)) as on_invoices,
             (select coalesce(sum(refunded), 0) from payments where invoice_id = any($1))
               as refunded,
             (select coalesce(sum(excess_pending), 0) from payments where invoice_id = any($1))
               as excess_pending,
             (select coalesce(sum(refund_unrecovered), 0) from payments
               where invoice_id = any($1))
             + (select coalesce(sum(unrecovered), 0) from reversals
                 where invoice_id = any($1) and booked = 'reversed') as unrecovered,
             (select coalesce(sum(reversed), 0) from payments where invoice_id = any($1))
               as reversed,
             (select coalesce(sum(amount), 0) from payments
               where invoice_id = any($1) and status = 'succeeded') as received,
             (select coalesce(sum(amount), 0) from refunds
               where invoice_id = any($1) and purpose = 'credit_note' and status = 'requested')
               as note_refunds_asked,
             (select coalesce(sum(post_payment_amount), 0) from credit_notes
               where invoice_id = any($1)) as given_by_notes,
             (select coalesce(sum(amount), 0) from credit_entries
               where customer_id = $2 and kind = 'adjustment') as adjusted""",
        world.invoices, world.customer)
    assert ledger["balance"] == ledger["entries"] >= 0
    assert ledger["last"] in (None, ledger["balance"])
    assert (money["on_invoices"] + ledger["balance"] + money["refunded"] + money["reversed"]
            + money["excess_pending"] + money["note_refunds_asked"] - money["unrecovered"]) \
        == money["received"] + money["given_by_notes"] + money["adjusted"], dict(money)


@pytest.fixture
async def book_pool(db: asyncpg.Pool) -> asyncpg.Pool:
    return db


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), policy=st.sampled_from(["credit", "refund"]),
       kinds=st.lists(st.sampled_from(STORY_STEPS), min_size=4, max_size=12))
async def test_the_books_balance_after_every_step(book_pool: asyncpg.Pool, data: st.DataObject,
                                                  policy: str, kinds: list[str]) -> None:
    suffix = uuid.uuid4().hex[:8]
    customer = f"cus_{suffix}"
    world = World(Books(book_pool, nothing, "http://settle.test"), suffix,
                  [f"inv_{suffix}_a", f"inv_{suffix}_b", f"inv_{suffix}_c"], customer, policy)
    await book_pool.execute("insert into customers (id, email) values ($1, 'p@example.com')",
                            customer)
    for n, invoice_id in enumerate(world.invoices):
        await book_pool.execute(
            """insert into invoices (id, customer_id, number, currency, total, sent_at,
                                     pay_token, auto_apply_credit)
               values ($1, $2, $1, 'usd', $3, now(), $1, false)""",
            invoice_id, customer, (4_000, 7_000, 1_500)[n])
    # Some stories start with credit the customer holds, spent on an invoice at once (as
    # an invoice sent with auto_apply_credit spends it).
    goodwill = data.draw(st.integers(0, 3_000))
    if goodwill:
        await credit.adjust(world.books, customer, credit.Adjustment(
            world.new_id("adj"), goodwill, "usd", "prepaid", {"a": goodwill}))
        await invoices.apply_credit(world.books, data.draw(st.sampled_from(world.invoices)),
                                    None)
    # Every story starts with money on its way; what happens then is Hypothesis's choice.
    for kind in ["capture", "capture", *kinds]:
        await step(world, kind, data)
        await check(world)
