"""The event job: claims, classifies errors, retries what may pass, records the rest."""

from __future__ import annotations

import json

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from core.errors import PermanentError, RetryLater, is_transient
from ledger.inbox import (
    RETRY_LATER_ATTEMPTS,
    UNEXPECTED_ERROR_ATTEMPTS,
    Event,
    Outcome,
    Policy,
    Registration,
)
from processors.stripe.events import data_object, invoice_reference
from tests.conftest import FAST_RETRIES, handlers_with, run_burst
from sandbox.events import event, signed
from core.settings import Settings

TYPE = "settle.test_case"


# Events that are retried on purpose are retried soon.
pytestmark = pytest.mark.retry_base_seconds(FAST_RETRIES)


async def deliver_one(client: TestClient) -> None:
    raw, headers = signed(event(TYPE, {"object": "case", "metadata": {"invoice_id": "inv_1"}}))
    assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200


async def only_event(db: asyncpg.Pool) -> asyncpg.Record:
    [row] = await db.fetch("select status, reason, attempts, processed_at from events")
    return row


def with_handler(handler: object) -> dict[str, Registration]:
    return handlers_with(**{TYPE: Registration(handler)})  # type: ignore[arg-type]


async def test_permanent_error_fails_at_once_and_moves_nothing(
        client: TestClient, db: asyncpg.Pool, settings: Settings) -> None:
    async def currency_mismatch(conn: asyncpg.Connection, ev: Event, policy: Policy) -> Outcome:
        await conn.execute("insert into test_probe_effects (event_id) values ($1)", ev.event_id)
        raise PermanentError("currency eur does not match invoice currency usd")

    await deliver_one(client)
    await run_burst(settings, with_handler(currency_mismatch))
    row = await only_event(db)
    assert (row["status"], row["attempts"]) == ("failed", 1)
    assert row["reason"] == "currency eur does not match invoice currency usd"
    # The write before the error was rolled back with it.
    assert await db.fetchval("select count(*) from test_probe_effects") == 0


async def test_retry_later_gives_up_after_its_attempts(
        client: TestClient, db: asyncpg.Pool, settings: Settings) -> None:
    calls = []

    async def unknown_invoice(conn: asyncpg.Connection, ev: Event, policy: Policy) -> Outcome:
        calls.append(ev.attempts)
        raise RetryLater("invoice inv_1 is unknown", defer=0.01)

    await deliver_one(client)
    await run_burst(settings, with_handler(unknown_invoice))
    row = await only_event(db)
    assert (row["status"], row["reason"]) == ("failed", "invoice inv_1 is unknown")
    assert row["attempts"] == RETRY_LATER_ATTEMPTS
    assert calls == list(range(RETRY_LATER_ATTEMPTS))


async def test_retry_later_succeeds_when_the_cause_passes(
        client: TestClient, db: asyncpg.Pool, settings: Settings) -> None:
    async def appears_later(conn: asyncpg.Connection, ev: Event, policy: Policy) -> Outcome:
        if ev.attempts < 2:
            raise RetryLater("invoice inv_1 is unknown", defer=0.01)
        return Outcome("processed")

    await deliver_one(client)
    await run_burst(settings, with_handler(appears_later))
    row = await only_event(db)
    assert (row["status"], row["attempts"], row["reason"]) == ("processed", 3, None)


async def test_transient_errors_are_retried(client: TestClient, db: asyncpg.Pool,
                                            settings: Settings) -> None:
    failures = [ConnectionRefusedError("db gone"), asyncpg.DeadlockDetectedError("deadlock")]

    async def flaky(conn: asyncpg.Connection, ev: Event, policy: Policy) -> Outcome:
        if failures:
            raise failures.pop(0)
        return Outcome("processed")

    await deliver_one(client)
    await run_burst(settings, with_handler(flaky))
    row = await only_event(db)
    assert (row["status"], row["attempts"]) == ("processed", 3)


async def test_unexpected_error_is_recorded_after_a_few_tries(
        client: TestClient, db: asyncpg.Pool, settings: Settings) -> None:
    async def buggy(conn: asyncpg.Connection, ev: Event, policy: Policy) -> Outcome:
        raise KeyError("amount_total")

    await deliver_one(client)
    await run_burst(settings, with_handler(buggy))
    row = await only_event(db)
    assert row["status"] == "failed"
    assert row["reason"] == "error: KeyError: 'amount_total'"
    assert row["attempts"] == UNEXPECTED_ERROR_ATTEMPTS


def test_error_classification() -> None:
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert is_transient(asyncpg.CannotConnectNowError("starting up"))
    assert is_transient(asyncpg.DeadlockDetectedError("deadlock"))
    assert is_transient(asyncpg.SerializationError("serialization"))
    assert is_transient(asyncpg.ObjectInUseError("in use"))
    assert not is_transient(asyncpg.UniqueViolationError("dup"))
    assert not is_transient(asyncpg.DataError("bad"))
    assert not is_transient(KeyError("x"))


def test_event_reads_invoice_id_defensively() -> None:
    assert invoice_reference({"data": {"object": {"metadata": {"invoice_id": "inv_9"}}}}) == \
        "inv_9"
    for payload in ({}, {"data": []}, {"data": {"object": "x"}}, {"data": {"object": {}}},
                    {"data": {"object": {"metadata": None}}},
                    {"data": {"object": {"metadata": {"invoice_id": 7}}}},
                    {"data": {"object": {"metadata": {"invoice_id": ""}}}}):
        assert invoice_reference(payload) is None
    assert json.dumps(data_object({})) == "{}"
