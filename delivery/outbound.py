"""Owing outbound webhook messages (CONTRACT §9), in the transaction of the change.

`owe_event` is the one way a change of the books tells the invoicing
application: it takes a snapshot of the object as the API would answer for it
now, gives it the next `sequence` of its invoice (or customer), and writes one
outbox row (kind `webhook`) per endpoint subscribed to the type, each with its
own message id (the `webhook-id` of every attempt). `jobs.effects.Webhook`
performs the rows (claim, perform, record), signed and sent by `notify.webhook`.

A snapshot carries its real links, written when it is owed with the transaction's
`Known.urls` (the public URL, whether pay links exist), as the API writes them.
Messages owed before migration 0020 had theirs written against a placeholder; that
migration marked them, and `jobs.effects.Webhook` resolves those alone as it sends.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypeAlias, get_args

import asyncpg

from core.errors import NotFound
from core.tx import Books, owed
from ledger.context import Endpoint, Known, Urls
from ledger.status import STATUS_SQL, status_of
from reads.customers import customer_view
from reads.views import VIEW_SQL, credit_note_view, payment_view, request_view, view_of

# The one list of what settle tells (CONTRACT §9): what an endpoint may subscribe to
# (`handlers.models`), each message's `type` (`handlers.messages`) and docs/webhooks.md's
# table come from it or are held to it (tests/test_openapi.py). A Literal, so that mypy
# knows each type; EVENT_TYPES is the same list as values.
EventType: TypeAlias = Literal[
    "invoice.sent", "invoice.partially_paid", "invoice.paid", "invoice.reopened",
    "invoice.overdue", "invoice.voided",
    "payment.processing", "payment.succeeded", "payment.failed", "payment.refunded",
    "payment.reversed",
    "payment_request.created", "payment_request.paid", "payment_request.superseded",
    "payment_request.cancelled",
    "credit_note.created", "customer.credit_changed",
]
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)
PING: Final = "ping"


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


async def _snapshot(conn: asyncpg.Connection, kind: str, object_id: str,
                    urls: Urls) -> dict[str, Any] | None:
    if kind == "invoice":
        row = await conn.fetchrow(VIEW_SQL + " where i.id = $1", object_id)
        return view_of(row, urls) if row is not None else None
    if kind == "payment":
        row = await conn.fetchrow("select * from payments where id = $1", object_id)
        return {**payment_view(row), "invoice_id": row["invoice_id"]} if row else None
    if kind == "payment_request":
        row = await conn.fetchrow("select * from payment_requests where id = $1", object_id)
        return request_view(row, urls.public_url) if row is not None else None
    if kind == "credit_note":
        row = await conn.fetchrow("select * from credit_notes where id = $1", object_id)
        return credit_note_view(row) if row is not None else None
    try:
        return await customer_view(conn, object_id, urls.public_url)
    except NotFound:
        return None


async def _endpoints(conn: asyncpg.Connection, known: Known) -> list[Endpoint]:
    """The enabled endpoints: those `known` holds, else read and kept in `known` for the
    rest of its transaction (a capture owes several messages, and most deployments have
    one endpoint or none)."""
    if known.endpoints is None:
        known.endpoints = list(await conn.fetch(
            "select id, events from webhook_endpoints where not disabled order by id"))
    return known.endpoints


async def owe_event(conn: asyncpg.Connection, type: str, *, known: Known,
                    invoice_id: str | None = None, customer_id: str | None = None,
                    object_id: str | None = None) -> int:
    """Owe `type` about an object (the invoice itself when `object_id` is None; the
    customer for `customer.*`) to every endpoint that wants it; how many messages.

    Call inside the transaction that makes it true, after the change: the snapshot
    is read in that transaction, its links written with `known.urls`.
    """
    endpoints = [endpoint for endpoint in await _endpoints(conn, known)
                 if endpoint["events"] is None or type in endpoint["events"]]
    if not endpoints:
        return 0
    kind = type.split(".", 1)[0]
    if kind == "customer":
        subject, the_id = f"customer:{customer_id}", customer_id
    else:
        subject, the_id = f"invoice:{invoice_id}", object_id or invoice_id
    assert the_id is not None
    # The sequence first: its row stays locked until this transaction ends, so a concurrent
    # change of the same subject (a customer's credit in another currency, whose balance row
    # is locked apart) waits here, and reads its snapshot only once this one has committed.
    # Read before it, the higher sequence could carry the older snapshot.
    sequence: int = await conn.fetchval(
        """insert into webhook_sequences (subject, last) values ($1, 1)
           on conflict (subject) do update set last = webhook_sequences.last + 1
           returning last""", subject)
    data = await _snapshot(conn, kind, the_id, known.urls)
    if data is None:
        return 0  # a sequence number unused: a gap, which a receiver never waits on
    timestamp = datetime.now(UTC).isoformat()
    message_ids = [new_message_id() for _ in endpoints]
    payloads = [json.dumps({"endpoint_id": endpoint["id"], "message_id": message_id,
                            "type": type, "timestamp": timestamp,
                            "data": {**data, "sequence": sequence}})
                for endpoint, message_id in zip(endpoints, message_ids)]
    # One statement for every endpoint (up to 50): one round trip inside the books'
    # transaction, however many endpoints there are.
    rows = await conn.fetch(
        """insert into outbox (kind, key, payload, invoice_id, endpoint_id)
           select 'webhook', 'webhook:' || m.message_id, m.payload::jsonb, $4, m.endpoint_id
           from unnest($1::text[], $2::text[], $3::text[]) as m(message_id, payload, endpoint_id)
           returning id""",
        message_ids, payloads, [endpoint["id"] for endpoint in endpoints], invoice_id)
    for row in rows:
        owed(row["id"])
    return len(rows)


async def owe_ping(conn: asyncpg.Connection, endpoint_id: str) -> str:
    """A ping to one endpoint (whatever its filter); the message id."""
    message_id = new_message_id()
    owed(await conn.fetchval(
        """insert into outbox (kind, key, payload, endpoint_id) values ('webhook', $1, $2, $3)
           returning id""",
        f"webhook:{message_id}",
        json.dumps({"endpoint_id": endpoint_id, "message_id": message_id, "type": PING,
                    "timestamp": datetime.now(UTC).isoformat(),
                    "data": {"endpoint_id": endpoint_id}}),
        endpoint_id))
    return message_id


Row: TypeAlias = "asyncpg.Record | dict[str, Any]"
# What an invoice's money is: a change of any of these is told (docs/webhooks.md).
MONEY_FIELDS: Final = ("amount_paid", "amount_credited", "amount_credit_noted")


def invoice_event(before: Row, after: Row) -> str | None:
    """The invoice.* type owed when an invoice changes from `before` to `after` (rows), or
    None: every change of its money or status is told, so the message with the highest
    sequence always carries the invoice as it is (the table in docs/webhooks.md).

    The type says where its money stands; `data.status` says the status, which the due
    date decides too (invoice.overdue itself is told by the scan, `owe_overdue`).
    """
    was, now = status_of(before), status_of(after)
    if was == now and all(before[f] == after[f] for f in MONEY_FIELDS):
        return None
    if now in ("draft", "void"):  # no money moves on these: told by sent and voided
        return None
    if now == "paid":
        return "invoice.paid"
    if was == "paid":
        return "invoice.reopened"
    if after["amount_paid"] + after["amount_credited"] > 0:
        return "invoice.partially_paid"
    # Everything paid taken back (a refund): it stands as sent again.
    return "invoice.sent"


async def invoice_changed(conn: asyncpg.Connection, before: Row, after: Row, *,
                          known: Known) -> None:
    """Owe the invoice.* message for a change of an invoice (its rows before and after), in
    the change's transaction."""
    type = invoice_event(before, after)
    if type is not None:
        await owe_event(conn, type, invoice_id=after["id"], known=known)


async def owe_overdue(books: Books, limit: int = 500) -> int:
    """Owe `invoice.overdue` for every open invoice past its due date not yet told about
    (a scan, since no change of the books makes an invoice overdue); how many."""
    known = Known(books)  # the endpoints, read once for every invoice of the scan
    async with books.transaction() as conn:
        rows = await conn.fetch(
            f"""update invoices set overdue_owed_for = due_date
                where id in (select i.id from invoices i
                             where i.due_date < (now() at time zone 'UTC')::date
                               and ({STATUS_SQL}) = 'overdue'
                               and i.overdue_owed_for is distinct from i.due_date
                             order by i.due_date, i.id limit $1
                             for update skip locked)
                returning id""", limit)
        for row in rows:
            await owe_event(conn, "invoice.overdue", invoice_id=row["id"], known=known)
        return len(rows)
