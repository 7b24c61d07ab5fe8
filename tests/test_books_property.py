"""The books' invariants hold after every step of any story (CONTRACT §4), in PostgreSQL.

Hypothesis plays a merchant, a customer and Stripe at once against the real
ledger: processor captures, manual payments, merchant refunds (answered,
refused), refunds made and failed at the processor (reported by
`charge.refunded` listing them, and `refund.failed`), credit notes both ways,
credit adjustments and credit applied to invoices, interleaved in any order,
with processor events delivered again late. After every step:

- each invoice's kept sums equal what its records say, and never exceed it;
- the customer's credit balance is the sum of its ledger entries, never below
  zero, and the last entry's `balance_after`;
- no money appears or vanishes: what the invoices hold, plus the credit
  balance, plus what went back or is on its way back, equals what was
  received plus what credit notes and adjustments gave.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import DomainError, RetryLater
from core.tx import Books
from ledger import credit, credit_notes, invoices, refunds
from ledger.inbox import Policy
from ledger.payments import ManualPayment, apply_facts, record_manual
from processors.stripe.events import interpret
from sandbox.events import charge_refunded, refund_event, refund_object, session_completed

STEPS = ["capture", "manual", "external_refund", "fail_refund", "merchant_refund", "answer",
         "refuse", "credit_note", "adjust", "apply_credit", "late"]


async def nothing(_: list[int]) -> None:
    return None


@dataclass
class Stripe:
    """What Stripe holds: each payment's refunds, as its events would list them."""

    captured: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    sent: list[dict[str, Any]] = field(default_factory=list)

    def charge_event(self, invoice_id: str, payment_id: str) -> dict[str, Any]:
        listed = self.refunds.setdefault(payment_id, [])
        live = sum(r["amount"] for r in listed if r["status"] not in ("failed", "canceled"))
        return charge_refunded(payment_id, self.captured[payment_id], live,
                               invoice_id=invoice_id, refunds=[dict(r) for r in listed])

    def room(self, payment_id: str) -> int:
        listed = self.refunds.get(payment_id, [])
        return self.captured[payment_id] - sum(
            r["amount"] for r in listed if r["status"] not in ("failed", "canceled"))


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
                                  Policy(world.policy))  # type: ignore[arg-type]
        except RetryLater:
            pass  # the inbox would try again later: the "late" step does
    world.stripe.sent.append(event)


async def step(world: World, kind: str, data: st.DataObject) -> None:
    stripe = world.stripe
    pool = world.books.pool
    invoice_id = data.draw(st.sampled_from(world.invoices))
    amount = data.draw(st.integers(1, 6_000))
    if kind == "capture":
        payment_id = world.new_id("pi")
        stripe.captured[payment_id] = amount
        world.payment_invoice[payment_id] = invoice_id
        await deliver(world, session_completed(invoice_id, amount, payment_id))
    elif kind == "manual":
        payment_id = world.new_id("m")
        world.payment_invoice[payment_id] = invoice_id
        await record_manual(world.books, invoice_id, ManualPayment(
            payment_id, amount, "check", None, None, {"amount": amount}))
    elif kind == "external_refund" and stripe.captured:
        payment_id = data.draw(st.sampled_from(sorted(stripe.captured)))
        if stripe.room(payment_id) > 0:
            refund = refund_object(world.new_id("re"), payment_id,
                                   data.draw(st.integers(1, stripe.room(payment_id))),
                                   "succeeded")
            stripe.refunds.setdefault(payment_id, []).append(refund)
            await deliver(world, stripe.charge_event(world.payment_invoice[payment_id],
                                                     payment_id))
    elif kind == "fail_refund":
        live = [r for rs in stripe.refunds.values() for r in rs
                if r["status"] in ("succeeded", "pending")]
        if live:
            refund = data.draw(st.sampled_from(live))
            refund["status"] = data.draw(st.sampled_from(["failed", "canceled"]))
            await deliver(world, refund_event("refund.failed", refund))
    elif kind == "merchant_refund":
        paid = await pool.fetch(
            "select id from payments where invoice_id = any($1) and status = 'succeeded'",
            world.invoices)
        if paid:
            payment_id = data.draw(st.sampled_from(sorted(r["id"] for r in paid)))
            try:
                await refunds.request_refund(world.books, payment_id, refunds.RefundRequest(
                    world.new_id("rf"), amount, None, {"amount": amount}), True)
            except DomainError as refused:
                assert refused.code == "amount_exceeds_refundable"
    elif kind in ("answer", "refuse"):
        asked = await pool.fetch(
            """select r.* from refunds r join payments p on p.id = r.payment_id
               where r.invoice_id = any($1) and r.status = 'requested'
                 and p.source <> 'manual' order by r.id""", world.invoices)
        if asked:
            row = data.draw(st.sampled_from(list(asked)))
            async with world.books.transaction() as conn:
                if kind == "refuse":
                    await refunds.refused(conn, row["id"], "card_declined")
                    return
                refund = refund_object(world.new_id("re"), row["payment_id"], row["amount"],
                                       "succeeded", settle_refund=row["id"])
                stripe.refunds.setdefault(row["payment_id"], []).append(refund)
                await refunds.answered(conn, row["id"], refund["id"], "succeeded")
            if data.draw(st.booleans()):  # and Stripe's webhook about it
                await deliver(world, stripe.charge_event(row["invoice_id"], row["payment_id"]))
    elif kind == "credit_note":
        try:
            await credit_notes.issue(world.books, invoice_id, credit_notes.CreditNoteInput(
                world.new_id("cn"), amount, None, data.draw(st.booleans()), {"a": amount}))
        except DomainError as refused:
            assert refused.code == "amount_exceeds_creditable"
    elif kind == "adjust":
        change = data.draw(st.integers(-3_000, 3_000).filter(bool))
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
    elif kind == "late" and stripe.sent:
        # An event Stripe sent earlier, delivered again now (a retry, or late).
        await deliver(world, data.draw(st.sampled_from(stripe.sent)))


async def check(world: World) -> None:
    pool = world.books.pool
    for invoice_id in world.invoices:
        row = await pool.fetchrow(
            """select i.total, i.amount_paid, i.amount_credited, i.amount_credit_noted,
                 (select coalesce(sum(applied - refund_from_paid), 0) from payments
                   where invoice_id = i.id and status = 'succeeded') as paid_by_payments,
                 (select coalesce(-sum(amount), 0) from credit_entries
                   where invoice_id = i.id and kind = 'applied') as credited_by_entries,
                 (select coalesce(sum(pre_payment_amount), 0) from credit_notes
                   where invoice_id = i.id) as noted_by_notes
               from invoices i where i.id = $1""", invoice_id)
        assert row["amount_paid"] == row["paid_by_payments"]
        assert row["amount_credited"] == row["credited_by_entries"]
        assert row["amount_credit_noted"] == row["noted_by_notes"]
        assert 0 <= row["amount_paid"] + row["amount_credited"] + row["amount_credit_noted"] \
            <= row["total"]
    ledger = await pool.fetchrow(
        """select coalesce((select balance from credit_balances
                             where customer_id = $1 and currency = 'usd'), 0) as balance,
                  coalesce((select sum(amount) from credit_entries where customer_id = $1), 0)
                    as entries,
                  (select balance_after from credit_entries where customer_id = $1
                    order by id desc limit 1) as last""", world.customer)
    assert ledger["balance"] == ledger["entries"] >= 0
    assert ledger["last"] in (None, ledger["balance"])
    money = await pool.fetchrow(
        """select
             (select coalesce(sum(amount_paid + amount_credited), 0) from invoices
               where id = any($1)) as on_invoices,
             (select coalesce(sum(refunded), 0) from payments where invoice_id = any($1))
               as refunded,
             (select coalesce(sum(excess_pending), 0) from payments where invoice_id = any($1))
               as excess_pending,
             (select coalesce(sum(refund_unrecovered), 0) from payments
               where invoice_id = any($1)) as unrecovered,
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
    assert (money["on_invoices"] + ledger["balance"] + money["refunded"]
            + money["excess_pending"] + money["note_refunds_asked"] - money["unrecovered"]) \
        == money["received"] + money["given_by_notes"] + money["adjusted"], dict(money)


@pytest.fixture
async def book_pool(db: asyncpg.Pool) -> asyncpg.Pool:
    return db


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data(), policy=st.sampled_from(["credit", "refund"]),
       kinds=st.lists(st.sampled_from(STEPS), min_size=1, max_size=14))
async def test_the_books_balance_after_every_step(book_pool: asyncpg.Pool, data: st.DataObject,
                                                  policy: str, kinds: list[str]) -> None:
    suffix = uuid.uuid4().hex[:8]
    customer = f"cus_{suffix}"
    world = World(Books(book_pool, nothing, "http://settle.test"), suffix,
                  [f"inv_{suffix}_a", f"inv_{suffix}_b"], customer, policy)
    await book_pool.execute("insert into customers (id, email) values ($1, 'p@example.com')",
                            customer)
    for n, invoice_id in enumerate(world.invoices):
        await book_pool.execute(
            """insert into invoices (id, customer_id, number, currency, total, sent_at,
                                     pay_token, auto_apply_credit)
               values ($1, $2, $1, 'usd', $3, now(), $1, false)""",
            invoice_id, customer, 4_000 + 3_000 * n)
    for kind in kinds:
        await step(world, kind, data)
        await check(world)
