"""What the event job's claim read is handed on explicitly (`ledger.context.Known`), and
nothing on its path reads it again: the invoice locked with the event (taken once), its
audience, the enabled endpoints."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from core.processor import InboundEvent
import core.tx as tx
from core.tx import Books, nothing
from ledger.context import Known
import ledger.inbox as inbox
from processors.stripe.events import HANDLERS, invoice_reference
from sandbox.events import payment_intent_succeeded
from tests.conftest import LINKS
from tests.service import Service

# What a second read of each would look like.
ENDPOINTS_READ = "from webhook_endpoints where not disabled"
INVOICE_LOCKED = "select * from invoices where id = $1 for update"
AUDIENCE_READ = "from invoices i join customers c on c.id = i.customer_id"


def claim_row(invoice_id: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"id": invoice_id, "event_endpoints": [{"id": "ep", "events": None}]}
    if invoice_id is not None:
        row.update(customer_email="a@example.com", customer_name="Ada", customer_locale="en",
                   notify_emails=["b@example.com", "a@example.com"], number="N-1",
                   currency="usd", total=100, view_token="t", due_date=None)
    return row


def test_the_locked_invoice_is_taken_once_and_only_for_itself() -> None:
    row = claim_row("inv_1")
    known = Known.claimed(row, LINKS)  # type: ignore[arg-type]
    assert known.urls is LINKS  # what its transaction's links are written with
    assert known.take_invoice("inv_2") is None
    assert known.take_invoice("inv_1") is row
    assert known.take_invoice("inv_1") is None  # later locks read afresh
    # The audience serves the whole transaction, for its own invoice only.
    audience = known.audience_for("inv_1")
    assert audience is not None and audience["to"] == ["a@example.com", "b@example.com"]
    assert known.audience_for("inv_2") is None
    assert known.endpoints == [{"id": "ep", "events": None}]


def test_an_unknown_invoice_leaves_only_the_endpoints() -> None:
    known = Known.claimed(claim_row(None), LINKS)  # type: ignore[arg-type]
    assert known.invoice is None and known.audience is None
    assert known.take_invoice("inv_1") is None and known.audience_for("inv_1") is None
    assert known.endpoints == [{"id": "ep", "events": None}]


@pytest.mark.parametrize("amount", [1_000, 12_000])  # a receipt; paid in full, with excess
async def test_a_capture_reads_nothing_its_claim_read(svc: Service, db: asyncpg.Pool,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      amount: int) -> None:
    await svc.invoice("inv_1", 10_000)
    await svc.settle()
    await db.execute(
        "insert into webhook_endpoints (id, url, secret) values ('ep', 'http://x', 's')")
    event = payment_intent_succeeded("inv_1", amount, "pi_1")
    [pk] = await inbox.record_events(Books(db, nothing, ""), "stripe", [
        InboundEvent(event["id"], event["type"], invoice_reference(event), json.dumps(event))])
    assert pk is not None
    statements: list[str] = []
    opened = tx.transaction

    @contextlib.asynccontextmanager
    async def logged(pool: asyncpg.Pool, after: Any) -> AsyncIterator[asyncpg.Connection]:
        async with opened(pool, after) as conn:
            def log(record: Any) -> None:
                statements.append(" ".join(record.query.split()))
            conn.add_query_logger(log)
            try:
                yield conn
            finally:
                conn.remove_query_logger(log)

    monkeypatch.setattr(tx, "transaction", logged)
    outcome = await inbox.apply_event(Books(db, nothing, ""), pk, {"stripe": HANDLERS})
    assert outcome.status == "processed", outcome
    # Mails and messages were owed (so each read was wanted), and none was read again.
    assert any("insert into outbox (kind, key, payload, invoice_id) values" in s
               for s in statements)
    assert any("'webhook'" in s for s in statements)
    assert statements[0].startswith("with event as materialized")
    assert [s for s in statements if ENDPOINTS_READ in s or INVOICE_LOCKED in s
            or AUDIENCE_READ in s] == []
