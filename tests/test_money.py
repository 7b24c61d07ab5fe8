"""The money rules as pure functions, with property tests over any sequence of steps."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import money


def test_remaining_never_below_zero() -> None:
    assert money.remaining(10_000, 3_000, 0) == 7_000
    assert money.remaining(10_000, 9_000, 2_000) == 0


@pytest.mark.parametrize("kwargs,expected", [
    ({"voided": True, "sent": True, "amount_paid": 10_000}, "void"),
    ({"sent": False}, "draft"),
    ({"amount_paid": 10_000, "due_date": date(2020, 1, 1)}, "paid"),
    ({"amount_paid": 6_000, "amount_credited": 4_000}, "paid"),
    ({"amount_paid": 1, "due_date": date(2020, 1, 1)}, "overdue"),
    ({"due_date": date(2020, 1, 1)}, "overdue"),
    ({"amount_credited": 1}, "partially_paid"),
    ({"due_date": date(2030, 1, 1)}, "sent"),
    ({"due_date": date(2026, 6, 1)}, "sent"),  # due today is not overdue
])
def test_status_precedence(kwargs: dict[str, object], expected: str) -> None:
    args: dict[str, object] = {"voided": False, "sent": True, "total": 10_000, "amount_paid": 0,
                               "amount_credited": 0, "due_date": None, "today": date(2026, 6, 1)}
    args.update(kwargs)
    assert money.invoice_status(**args) == expected  # type: ignore[arg-type]


def test_capture_split() -> None:
    assert money.split_capture(3_000, 10_000) == money.CaptureSplit(3_000, 0)
    assert money.split_capture(12_000, 10_000) == money.CaptureSplit(10_000, 2_000)
    assert money.split_capture(2_000, 0) == money.CaptureSplit(0, 2_000)
    with pytest.raises(ValueError):
        money.split_capture(-1, 10)


def test_refund_takes_credit_first_then_paid() -> None:
    assert money.split_refund(2_500, credit_from_payment=2_000, balance=5_000,
                              applied_from_payment=10_000) == money.RefundSplit(2_000, 500, 0)
    # Credit already spent: what is left of it on the balance only.
    assert money.split_refund(2_500, credit_from_payment=2_000, balance=300,
                              applied_from_payment=10_000) == money.RefundSplit(300, 2_200, 0)
    assert money.split_refund(12_000, credit_from_payment=2_000, balance=0,
                              applied_from_payment=10_000) == money.RefundSplit(0, 10_000, 2_000)


def line(amount: int, status: str, purpose: str = "external", at_processor: bool = True, *,
         made: int | None = None, failed: int | None = None) -> money.RefundLine:
    return money.RefundLine(amount, status, purpose, at_processor,
                            made_at=None if made is None else at(made),
                            failed_at=None if failed is None else at(failed))


def at(second: int) -> datetime:
    """A moment on the processor's clock, `second` seconds into the story."""
    return datetime(2026, 6, 1, tzinfo=UTC) + timedelta(seconds=second)


def test_refund_totals_are_cumulative_and_never_lowered_by_an_older_report() -> None:
    assert money.refund_totals(500, []) == money.RefundTotals(500, 500)
    # Known refunds count while confirmed; a cumulative report covers unknown ones.
    assert money.refund_totals(300, [line(500, "succeeded")]) == money.RefundTotals(500, 500)
    assert money.refund_totals(800, [line(500, "pending")]) == money.RefundTotals(800, 800)
    # A refund asked for but not yet confirmed takes nothing.
    assert money.refund_totals(0, [line(500, "requested", "merchant", False)]) == \
        money.RefundTotals(0, 0)


def test_a_failed_refund_is_given_back_once_in_any_order() -> None:
    # Reported 500, then the refund failed: nothing refunded any more.
    assert money.refund_totals(500, [line(500, "failed")]) == money.RefundTotals(0, 0)
    # Then another refund of 300 (the cumulative figure went down to 300 at Stripe).
    assert money.refund_totals(500, [line(500, "failed"), line(300, "succeeded")]) == \
        money.RefundTotals(300, 300)
    assert money.later_status("succeeded", "failed") == "failed"
    assert money.later_status("failed", "succeeded") == "failed"
    assert money.later_status("requested", "pending") == "pending"
    assert money.later_status("pending", "requested") == "pending"


def test_a_refunds_status_is_in_settles_words() -> None:
    # requested, then the processor's answer: pending, succeeded, failed (each processor
    # translates its own words, Stripe's requires_action and canceled among them).
    assert list(money.REFUND_RANK) == ["requested", "pending", "succeeded", "failed"]
    assert money.COUNTED == {"pending", "succeeded"} and money.FAILED == {"failed"}
    assert money.later_status("pending", "succeeded") == "succeeded"
    assert money.later_status("succeeded", "pending") == "succeeded"
    assert money.later_status("failed", "pending") == "failed"


def test_the_newest_report_counts_without_the_refunds_that_failed_before_it() -> None:
    # The review's story: 500 reported for R1 (second 1), R1 fails (second 2), then 300
    # reported for a new refund R2 that no event lists (second 3). The truth is 300.
    r1 = line(500, "failed", made=0, failed=2)
    assert money.refund_totals(300, [r1], reported_at=at(3)) == money.RefundTotals(300, 300)
    # Only the report from before the failure known: R1 was in it, and it failed.
    assert money.refund_totals(500, [r1], reported_at=at(1)) == money.RefundTotals(0, 0)
    # R1 failed after the newest report: the report held it, nothing else.
    assert money.refund_totals(500, [line(500, "failed", made=0, failed=4)],
                               reported_at=at(3)) == money.RefundTotals(0, 0)


def test_a_refund_made_after_the_newest_report_is_not_in_it() -> None:
    # settle's own refund, answered, made after the report: the report's 300 is another.
    mine = line(200, "succeeded", "merchant", made=5)
    assert money.refund_totals(300, [mine], reported_at=at(3)) == money.RefundTotals(500, 500)
    # Made before it: the report's 300 holds it.
    assert money.refund_totals(300, [line(200, "succeeded", "merchant", made=2)],
                               reported_at=at(3)) == money.RefundTotals(300, 300)


def test_a_refund_not_proven_absent_from_a_report_is_taken_as_in_it() -> None:
    # Failed in the very second of the report (the processor's clock has whole seconds):
    # the report may hold it, so it explains the report rather than a refund never seen.
    assert money.refund_totals(500, [line(500, "failed", made=0, failed=3)],
                               reported_at=at(3)) == money.RefundTotals(0, 0)
    # Without times, every refund the processor knows may be in the report.
    assert money.refund_totals(500, [line(500, "failed", made=0, failed=2)]) == \
        money.RefundTotals(0, 0)


def test_a_report_before_the_answer_to_settles_own_refund_is_that_refund() -> None:
    # A credit note's refund (or an overpayment's) asked for, its answer not back yet: a
    # cumulative report of it is that refund, which belongs to its purpose (issue 13).
    for purpose in ("credit_note", "excess"):
        asked = line(5_000, "requested", purpose, False)
        assert money.refund_totals(5_000, [asked]) == money.RefundTotals(0, 0)
        # What the report holds beyond it was made elsewhere: under the refund rule.
        assert money.refund_totals(6_000, [asked]) == money.RefundTotals(1_000, 1_000)
        # Answered: counted, and still not under the rule.
        answered = line(5_000, "succeeded", purpose, made=1)
        assert money.refund_totals(5_000, [answered], reported_at=at(2)) == \
            money.RefundTotals(5_000, 0)
    # Refused (it never happened): the report is someone else's refund.
    refused = line(5_000, "failed", "credit_note", False)
    assert money.refund_totals(5_000, [refused]) == money.RefundTotals(5_000, 5_000)


def test_settle_own_refunds_take_nothing_back_under_the_rule() -> None:
    # settle's own excess refund (policy refund) and a credit note's refund leave the
    # books through their own paths.
    assert money.refund_totals(2_000, [line(2_000, "succeeded", "excess")]) == \
        money.RefundTotals(2_000, 0)
    assert money.refund_totals(2_500, [line(2_000, "succeeded", "excess")]) == \
        money.RefundTotals(2_500, 500)
    assert money.refund_totals(0, [line(700, "succeeded", "credit_note")]) == \
        money.RefundTotals(700, 0)


def test_a_give_back_undoes_the_last_taken_first() -> None:
    assert money.split_give_back(500, unrecovered=100, from_paid=300, from_credit=400,
                                 room=10_000) == money.GiveBack(100, 300, 0, 100)
    # The invoice was paid another way meanwhile: what cannot go back to it is credit.
    assert money.split_give_back(300, unrecovered=0, from_paid=300, from_credit=0,
                                 room=120) == money.GiveBack(0, 120, 180, 0)


def test_a_credit_note_returns_the_applied_credit_first_and_never_twice() -> None:
    # 1000 of credit applied; a credit note gives 600 back to the balance: all from it.
    assert money.credit_returned(600, applied=1_000, returned=0) == 600
    # A second one of 600: only the 400 of applied credit not yet returned is from it.
    assert money.credit_returned(600, applied=1_000, returned=600) == 400
    # Once the applied credit is all returned, what goes back is paid money.
    assert money.credit_returned(500, applied=1_000, returned=1_000) == 0
    assert money.credit_returned(500, applied=0, returned=0) == 0


def test_void_gives_back_the_applied_credit_less_what_credit_notes_returned() -> None:
    assert money.credit_back_on_void(1_000, 0) == 1_000
    assert money.credit_back_on_void(1_000, 1_000) == 0
    assert money.credit_back_on_void(400, 400) == 0
    assert money.credit_back_on_void(1_000, 300) == 700


@given(applied=st.integers(0, 10_000), notes=st.lists(st.integers(1, 5_000), max_size=5))
def test_credit_notes_and_void_together_return_at_most_the_applied_credit(
        applied: int, notes: list[int]) -> None:
    returned = 0
    for credited in notes:
        returned += money.credit_returned(credited, applied=applied, returned=returned)
    assert returned <= applied
    assert returned + money.credit_back_on_void(applied, returned) == applied


def test_money_still_applied_is_net_of_every_refund() -> None:
    # A manual payment of 300 refunded in full: nothing stands on the invoice.
    assert money.still_applied(applied=300, refund_from_paid=300, amount=300, refunded=300) == 0
    # 200 of it refunded: 100 stands.
    assert money.still_applied(applied=300, refund_from_paid=200, amount=300,
                               refunded=200) == 100
    # A credit note's refund of all of it (the rule takes nothing from the invoice).
    assert money.still_applied(applied=600, refund_from_paid=0, amount=600, refunded=600) == 0
    # Its excess of 400 taken back from credit: the 600 applied stands.
    assert money.still_applied(applied=600, refund_from_paid=0, amount=1_000,
                               refunded=400) == 600


def test_credit_to_apply() -> None:
    assert money.credit_to_apply(None, 1_500, 7_000) == 1_500
    assert money.credit_to_apply(500, 1_500, 7_000) == 500
    assert money.credit_to_apply(9_000, 10_000, 7_000) == 7_000
    assert money.credit_to_apply(None, 0, 7_000) == 0
    with pytest.raises(ValueError):
        money.credit_to_apply(0, 10, 10)


@pytest.mark.parametrize("written,currency,amount", [
    ("25.50", "usd", 2_550), ("25.5", "usd", 2_550), ("25", "usd", 2_500), ("0.01", "usd", 1),
    ("1.250", "kwd", 1_250), ("1.25", "kwd", 1_250), ("0.005", "bhd", 5), ("500", "jpy", 500),
    ("500.00", "jpy", 500), ("25.500", "usd", 2_550), ("007.10", "eur", 710),
    ("1E+2", "usd", 10_000), ("9007199254740991", "jpy", money.LARGEST),
])
def test_an_amount_in_minor_units_by_the_currencys_exponent(written: str, currency: str,
                                                             amount: int) -> None:
    assert money.minor_units(Decimal(written), currency) == amount


@pytest.mark.parametrize("written,currency,code", [
    ("25.505", "usd", "too_many_decimals"), ("500.5", "jpy", "too_many_decimals"),
    ("1.2505", "kwd", "too_many_decimals"),
    # Exactly, past the decimal context's 28 digits of precision.
    ("1.000000000000000000000000000001", "usd", "too_many_decimals"),
    ("0", "usd", "not_positive"), ("0.00", "usd", "not_positive"), ("-5", "usd", "not_positive"),
    ("9007199254740992", "jpy", "too_large"), ("90071992547409.92", "usd", "too_large"),
    ("1E+40", "usd", "too_large"), ("NaN", "usd", "not_a_number"),
    ("Infinity", "usd", "not_a_number"),
])
def test_an_amount_that_is_not_one(written: str, currency: str, code: str) -> None:
    with pytest.raises(money.AmountRefused) as refused:
        money.minor_units(Decimal(written), currency)
    assert refused.value.code == code


@pytest.mark.parametrize("amount,left,minimum,why", [
    (1_000, 7_000, 1_000, None), (7_000, 7_000, 1_000, None), (999, 7_000, 1_000, "below_minimum"),
    (7_001, 7_000, 1_000, "above_remaining"), (500, 500, 1_000, None), (400, 500, 1_000, "below_minimum"),
    (1, 7_000, 0, None),
])
def test_a_customers_own_amount(amount: int, left: int, minimum: int, why: str | None) -> None:
    assert money.partial_refusal(amount, left=left, minimum=minimum) == why
    if why is None:
        assert money.partial_floor(left, minimum) <= amount <= left


# --- property: any sequence of steps keeps the books balanced -----------------------

@dataclass
class Payment:
    amount: int = 0
    applied: int = 0
    credited: int = 0
    refunded: int = 0
    from_credit: int = 0
    from_paid: int = 0
    unrecovered: int = 0
    captured: bool = False


@dataclass
class Books:
    """A model of one customer in one currency, moved only by the pure functions."""

    totals: list[int]
    paid: list[int] = field(default_factory=list)
    credited: list[int] = field(default_factory=list)
    balance: int = 0
    granted: int = 0
    taken_back: int = 0
    payments: dict[str, tuple[int, Payment]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.paid = [0] * len(self.totals)
        self.credited = [0] * len(self.totals)

    def left(self, i: int) -> int:
        return money.remaining(self.totals[i], self.paid[i], self.credited[i])

    def capture(self, pid: str, invoice: int, amount: int) -> None:
        invoice, p = self.payments.setdefault(pid, (invoice, Payment()))
        if p.captured:
            return  # one payment id counts once
        split = money.split_capture(amount, self.left(invoice))
        p.amount, p.applied, p.credited, p.captured = amount, split.applied, split.excess, True
        self.paid[invoice] += split.applied
        self.balance += split.excess
        self.granted += split.excess
        if p.refunded:
            self.refund(pid, p.refunded)  # a refund reported before the capture

    def refund(self, pid: str, reported: int) -> None:
        if pid not in self.payments:
            return
        invoice, p = self.payments[pid]
        if not p.captured:
            p.refunded = max(p.refunded, reported)
            return
        reported = min(reported, p.amount)  # the processor never refunds more than captured
        p.refunded = max(p.refunded, reported)
        increase = max(0, money.refund_totals(p.refunded, []).by_rule
                       - (p.from_credit + p.from_paid + p.unrecovered))
        split = money.split_refund(increase, credit_from_payment=p.credited - p.from_credit,
                                   balance=self.balance,
                                   applied_from_payment=p.applied - p.from_paid)
        p.from_credit += split.from_credit
        p.from_paid += split.from_paid
        p.unrecovered += split.unrecovered
        self.balance -= split.from_credit
        self.taken_back += split.from_credit
        self.paid[invoice] -= split.from_paid

    def apply_credit(self, invoice: int, requested: int | None) -> None:
        used = money.credit_to_apply(requested, self.balance, self.left(invoice))
        self.balance -= used
        self.credited[invoice] += used

    def check(self) -> None:
        captured = sum(p.amount for _, p in self.payments.values() if p.captured)
        refunded = sum(p.from_credit + p.from_paid + p.unrecovered
                       for _, p in self.payments.values() if p.captured)
        unrecovered = sum(p.unrecovered for _, p in self.payments.values())
        # amount_paid + credit granted - credit taken back = captured - refunded
        # (what was refunded after being spent as credit elsewhere is recorded apart).
        assert sum(self.paid) + self.granted - self.taken_back == captured - refunded + unrecovered
        assert self.balance == self.granted - self.taken_back - sum(self.credited)
        assert self.balance >= 0
        for i, total in enumerate(self.totals):
            assert 0 <= self.paid[i] <= total
            assert self.left(i) >= 0
            assert self.paid[i] + self.credited[i] <= total


steps = st.lists(st.one_of(
    st.tuples(st.just("capture"), st.sampled_from("abcde"), st.integers(0, 2),
              st.integers(1, 15_000)),
    st.tuples(st.just("refund"), st.sampled_from("abcde"), st.integers(0, 15_000)),
    st.tuples(st.just("credit"), st.integers(0, 2), st.one_of(st.none(), st.integers(1, 9_000))),
), max_size=30)


def run(books: Books, step: tuple[object, ...]) -> None:
    if step[0] == "capture":
        books.capture(step[1], step[2], step[3])  # type: ignore[arg-type]
    elif step[0] == "refund":
        books.refund(step[1], step[2])  # type: ignore[arg-type]
    else:
        books.apply_credit(step[1], step[2])  # type: ignore[arg-type]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(1, 12_000), min_size=3, max_size=3), steps, st.data())
def test_books_stay_balanced_and_duplicates_change_nothing(totals: list[int],
                                                            sequence: list[tuple[object, ...]],
                                                            data: st.DataObject) -> None:
    books = Books(totals)
    for step in sequence:
        run(books, step)
        books.check()
        if step[0] != "credit" and data.draw(st.booleans()):
            # A duplicate delivery of the same capture or cumulative refund is a no-op.
            before = repr(books)
            run(books, step)
            assert repr(books) == before
