"""The backlog as operators see it: events and owed side effects (the outbox) by status,
newest first, and replaying or retrying the failed ones."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from core.errors import Invalid, NotFound
from core.tx import Books
from reads.cursors import BIGINT_MAX, decode_row_cursor, encode_cursor
from reads.views import maybe_iso

EVENT_STATUSES = ("pending", "processed", "ignored", "failed")
OUTBOX_STATUSES = ("pending", "done", "failed")
OUTBOX_PAGE = (1, 100)
# Kinds name what is done (email, refund, expire_checkout...); a filter is one such name.
_KIND = re.compile(r"[a-z][a-z0-9_]{0,63}")
# An outbox id is a bigint (a whole number past its range names no row).
_OUTBOX_ID = re.compile(r"[0-9]{1,255}")


async def list_events(pool: asyncpg.Pool, status: str | None, cursor: str | None,
                      limit: int = 50) -> dict[str, Any]:
    """Newest first, `limit` a page, `next` the cursor of the following page (or None)."""
    if status is not None and status not in EVENT_STATUSES:
        raise Invalid("status_invalid", f"status must be one of {', '.join(EVENT_STATUSES)}")
    before = decode_row_cursor(cursor) if cursor else None
    rows = await pool.fetch(
        """select id, event_id, type, status, reason, attempts, received_at, processed_at
           from events
           where ($1::text is null or status = $1)
             and ($2::timestamptz is null or (received_at, id) < ($2, $3))
           order by received_at desc, id desc limit $4""",
        status, before[0] if before else None, before[1] if before else 0, limit + 1,
    )
    page = rows[:limit]
    return {
        "events": [{"id": r["event_id"], "type": r["type"], "status": r["status"],
                    "reason": r["reason"], "attempts": r["attempts"],
                    "received_at": maybe_iso(r["received_at"]),
                    "processed_at": maybe_iso(r["processed_at"])} for r in page],
        "next": encode_cursor(page[-1]["received_at"], page[-1]["id"]) if len(rows) > limit else None,
    }


async def replay_event(books: Books, event_id: str) -> tuple[int, str]:
    """Make a failed event pending again; (its row id, its status now).

    A processed or ignored event is left as it is: replaying it changes nothing.
    """
    row = await books.pool.fetchrow(
        """update events set status = 'pending', attempts = 0, processed_at = null,
                  reason = 'replayed after: ' || coalesce(reason, '')
           where event_id = $1 and status = 'failed'
           returning id, status""",
        event_id)
    if row is None:
        row = await books.pool.fetchrow("select id, status from events where event_id = $1",
                                  event_id)
    if row is None:
        raise NotFound("event", event_id)
    return row["id"], row["status"]


async def list_outbox(pool: asyncpg.Pool, status: str | None, kind: str | None,
                      cursor: str | None, limit: int = 50) -> dict[str, Any]:
    """Owed side effects (mails, processor refunds and session expiries...), newest first,
    `limit` a page, `next` the cursor of the following page (or None)."""
    if status is not None and status not in OUTBOX_STATUSES:
        raise Invalid("status_invalid", f"status must be one of {', '.join(OUTBOX_STATUSES)}")
    if kind is not None and not _KIND.fullmatch(kind):
        raise Invalid("kind_invalid", "kind is a name like email or refund")
    low, high = OUTBOX_PAGE
    if not low <= limit <= high:
        raise Invalid("limit_invalid", f"limit must be from {low} to {high}")
    before = decode_row_cursor(cursor) if cursor else None
    rows = await pool.fetch(
        """select id, kind, key, status, reason, attempts, invoice_id, created_at, done_at
           from outbox
           where ($1::text is null or status = $1)
             and ($2::text is null or kind = $2)
             and ($3::timestamptz is null or (created_at, id) < ($3, $4))
           order by created_at desc, id desc limit $5""",
        status, kind, before[0] if before else None, before[1] if before else 0, limit + 1,
    )
    page = rows[:limit]
    return {
        "items": [{"id": r["id"], "kind": r["kind"], "key": r["key"], "status": r["status"],
                   "reason": r["reason"], "attempts": r["attempts"],
                   "invoice_id": r["invoice_id"], "created_at": maybe_iso(r["created_at"]),
                   "done_at": maybe_iso(r["done_at"])} for r in page],
        "next": encode_cursor(page[-1]["created_at"], page[-1]["id"]) if len(rows) > limit else None,
    }


async def retry_outbox(books: Books, outbox_id: str) -> tuple[int, str]:
    """Make a failed side effect pending again; (its id, its status now).

    It keeps its key, so the processor's idempotency key and the mail's
    Message-ID are the same as before: an effect that did happen after all is
    not performed twice. A row that has not failed is left as it is.
    """
    if not _OUTBOX_ID.fullmatch(outbox_id):
        raise Invalid("id_invalid", "an outbox id is a whole number")
    pk = int(outbox_id)
    if pk > BIGINT_MAX:
        raise NotFound("outbox entry", outbox_id)
    row = await books.pool.fetchrow(
        """update outbox set status = 'pending', attempts = 0, done_at = null,
                  lease_until = null, next_attempt_at = now(),
                  retried_at = now(), reason = 'retried after: ' || coalesce(reason, '')
           where id = $1 and status = 'failed'
           returning id, status""",
        pk)
    if row is None:
        row = await books.pool.fetchrow("select id, status from outbox where id = $1", pk)
    if row is None:
        raise NotFound("outbox entry", outbox_id)
    return row["id"], row["status"]
