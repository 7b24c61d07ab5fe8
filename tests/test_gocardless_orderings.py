"""GoCardless's events for one payment in every order, and delivered twice: the books end
where the payment's real history puts them. The stand-in moves the payment through its
history first (its events held back), then the test delivers them in each order, each
batch applied before the next arrives, and then all of them again."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.gocardless_service import GoCardlessService, gcstandin, gcsvc

__all__ = ["gcstandin", "gcsvc"]  # fixtures

# (the payment's history at GoCardless, what the books say after every order of it):
# (payment status, invoice amount_paid, payment reversed).
HISTORIES: dict[str, tuple[tuple[str, ...], tuple[str, int, int]]] = {
    "collected": (("submitted", "confirmed"), ("succeeded", 10_000, 0)),
    "failed": (("submitted", "failed"), ("failed", 0, 0)),
    "late_failure": (("submitted", "confirmed", "late_failure"), ("succeeded", 0, 10_000)),
    "late_failure_settled": (("submitted", "confirmed", "late_failure", "late_failure_settled"),
                             ("succeeded", 0, 10_000)),
    "charged_back": (("submitted", "confirmed", "paid_out", "charged_back"),
                     ("succeeded", 0, 10_000)),
    "chargeback_cancelled": (("submitted", "confirmed", "charged_back", "chargeback_cancelled"),
                             ("succeeded", 10_000, 0)),
}


def orders(history: tuple[str, ...]) -> list[tuple[int, ...]]:
    return list(itertools.permutations(range(len(history))))


CASES = [(name, order) for name, (history, _) in HISTORIES.items()
         for order in orders(history)]


async def _books(gcsvc: GoCardlessService, payment_id: str) -> tuple[str, int, int]:
    payment = await gcsvc.payment_view(payment_id)
    invoice = await gcsvc.get_invoice("inv_1")
    return payment["status"], invoice["amount_paid"], payment["reversed"]


@pytest.mark.parametrize("name,order", CASES,
                         ids=[f"{name}-{''.join(map(str, order))}" for name, order in CASES])
async def test_every_order_of_a_payments_events_ends_in_its_books(
        gcsvc: GoCardlessService, name: str, order: tuple[int, ...]) -> None:
    history, expected = HISTORIES[name]
    await gcsvc.gbp_invoice(notify_emails=["books@example.com"])
    payment_id = str(gcsvc.gc.payment("inv_1", 10_000)["id"])
    batches = [gcsvc.gc.move(payment_id, action) for action in history]
    for n in order:
        await gcsvc.deliver(*batches[n])
    assert await _books(gcsvc, payment_id) == expected
    # Every batch again, all at once and in reverse: nothing moves.
    await gcsvc.deliver(*[event for events in reversed(batches) for event in events])
    assert await _books(gcsvc, payment_id) == expected
    statuses = {r["status"] for r in await gcsvc.events()}
    assert statuses <= {"processed", "ignored"}, await gcsvc.events()
    # Money moved once: one reversal mail for a reversal taken (a chargeback cancelled
    # before its news was applied was never taken: no mail), none without one.
    reversed_mails = await gcsvc.mails("payment_reversed")
    if name == "chargeback_cancelled":
        assert reversed_mails <= 1
    else:
        assert reversed_mails == (0 if name in ("collected", "failed") else 1)
    entries = await gcsvc.db.fetchval(
        "select count(*) from reversals where payment_id = $1", payment_id)
    assert entries == (0 if name in ("collected", "failed") else 1)


async def test_one_batch_holding_a_payments_whole_history_shuffled_and_twice(
        gcsvc: GoCardlessService) -> None:
    """GoCardless batches what happened together; a batch may hold a payment's later news
    before its earlier (a late failure before its confirmation)."""
    await gcsvc.gbp_invoice()
    payment_id = str(gcsvc.gc.payment("inv_1", 10_000)["id"])
    events: list[Any] = [event for action in ("submitted", "confirmed", "late_failure")
                         for event in gcsvc.gc.move(payment_id, action)]
    await gcsvc.deliver(events[2], events[0], events[1], events[2], events[0])
    assert await _books(gcsvc, payment_id) == ("succeeded", 0, 10_000)
    assert await gcsvc.mails("payment_reversed") == 0  # no notify_emails: no merchant mail
    assert [r["status"] for r in await gcsvc.events()] == ["processed"] * 3
