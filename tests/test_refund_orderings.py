"""Refunds tracked by refund id: any order of capture, refund and refund-failure
events, each delivered any number of times, ends in the right books (CONTRACT §3, §4).

Hypothesis writes a story as Stripe would tell it (a capture; refunds made one
after another, some of which fail later; each refund announced by a
`charge.refunded` listing the refunds so far with the cumulative total, each
failure by `refund.failed`), then delivers its events shuffled and duplicated
to the real ledger in PostgreSQL, through the Stripe package's own reading of
them. An event for a payment not yet known is retried later, as the inbox does.
The books must end as the story says, whatever the order.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import RetryLater
from ledger.inbox import Policy
from ledger.payments import apply_facts
from processors.stripe.events import interpret
from sandbox.events import (
    charge_refunded,
    payment_intent_succeeded,
    refund_event,
    refund_object,
    session_completed,
)


@dataclass
class Story:
    total: int
    captured: int
    refunds: list[tuple[int, bool]]  # (amount, fails later)
    order: list[int]  # where each failure happens among the other steps

    def events(self, invoice_id: str, payment_id: str) -> list[dict[str, Any]]:
        out = [session_completed(invoice_id, self.captured, payment_id),
               payment_intent_succeeded(invoice_id, self.captured, payment_id)]
        made: list[dict[str, Any]] = []
        failures: list[dict[str, Any]] = []
        for n, (amount, fails) in enumerate(self.refunds):
            refund = refund_object(f"re_{payment_id}_{n}", payment_id, amount, "succeeded")
            made.append(refund)
            listed = [dict(r) for r in made]
            out.append(charge_refunded(
                payment_id, self.captured,
                sum(r["amount"] for r in made if r["status"] == "succeeded"),
                invoice_id=invoice_id, refunds=listed))
            if fails:
                failures.append(refund)
            # Failures happen after their refund was made, at a point the story chose.
            while failures and self.order and self.order.pop() % 2 == 0:
                failed = failures.pop(0)
                failed["status"] = "failed"
                out.append(refund_event("refund.failed", failed))
        for failed in failures:
            failed["status"] = "failed"
            out.append(refund_event("refund.failed", failed))
        return out

    def expected(self) -> dict[str, int]:
        refunded = sum(amount for amount, fails in self.refunds if not fails)
        excess = max(0, self.captured - self.total)
        from_credit = min(refunded, excess)
        return {"amount_paid": min(self.captured, self.total) - (refunded - from_credit),
                "balance": excess - from_credit, "refunded": refunded}


@st.composite
def stories(draw: st.DrawFn) -> Story:
    total = draw(st.integers(1_000, 10_000))
    captured = draw(st.integers(500, 15_000))
    refunds: list[tuple[int, bool]] = []
    left = captured
    for _ in range(draw(st.integers(0, 4))):
        if left <= 0:
            break
        amount = draw(st.integers(1, left))
        fails = draw(st.booleans())
        refunds.append((amount, fails))
        # Stripe never refunds more than was captured (failed refunds give room back,
        # but only once they have failed: keep it simple and never over the capture).
        left -= amount
    order = draw(st.lists(st.integers(0, 3), max_size=8))
    return Story(total, captured, refunds, order)


async def deliver(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> None:
    """Apply each event in its own transaction; one the ledger cannot place yet (its
    payment unknown) goes to the back of the line, as the inbox retries it."""
    line = list(events)
    tries = 0
    while line:
        event = line.pop(0)
        try:
            async with conn.transaction():
                await apply_facts(conn, interpret(event["type"], event), Policy("credit"))
        except RetryLater:
            tries += 1
            assert tries < 200, "an event could never be applied"
            line.append(event)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(story=stories(), seed=st.integers(0, 2**32), copies=st.lists(st.integers(1, 3),
                                                                        min_size=20, max_size=20))
async def test_any_order_of_captures_refunds_and_failures_ends_in_the_right_books(
        db: asyncpg.Pool, story: Story, seed: int, copies: list[int]) -> None:
    suffix = uuid.uuid4().hex[:10]
    invoice_id, payment_id, customer = f"inv_{suffix}", f"pi_{suffix}", f"cus_{suffix}"
    async with db.acquire() as conn:
        await conn.execute("insert into customers (id, email) values ($1, 'p@example.com')",
                           customer)
        await conn.execute(
            """insert into invoices (id, customer_id, number, currency, total, sent_at, pay_token)
               values ($1, $2, $1, 'usd', $3, now(), $1)""",
            invoice_id, customer, story.total)
        events = story.events(invoice_id, payment_id)
        shuffled = [e for n, e in enumerate(events) for _ in range(copies[n % len(copies)])]
        random.Random(seed).shuffle(shuffled)
        await deliver(conn, shuffled)

        invoice = await conn.fetchrow("select amount_paid from invoices where id = $1",
                                      invoice_id)
        balance = await conn.fetchval(
            "select coalesce(sum(balance), 0) from credit_balances where customer_id = $1",
            customer)
        entries = await conn.fetchval(
            "select coalesce(sum(amount), 0) from credit_entries where customer_id = $1",
            customer)
        payment = await conn.fetchrow("select refunded from payments where id = $1", payment_id)
    assert {"amount_paid": invoice["amount_paid"], "balance": balance,
            "refunded": payment["refunded"]} == story.expected(), (story, seed)
    assert balance == entries
