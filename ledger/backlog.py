"""The backlog as operators see it: events by status, newest first, and replays."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import asyncpg

from core.errors import Invalid, NotFound

EVENT_STATUSES = ("pending", "processed", "ignored", "failed")


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _cursor(received_at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{received_at.isoformat()}|{pk}".encode()).decode()


def _uncursor(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, _, pk = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        at, row = datetime.fromisoformat(stamp), int(pk)
    except ValueError:
        row = -1
    if not 0 <= row < 2**63:
        raise Invalid("cursor_invalid", "next is not a cursor this service gave")
    return at, row


async def list_events(pool: asyncpg.Pool, status: str | None, cursor: str | None,
                      limit: int = 50) -> dict[str, Any]:
    """Newest first, `limit` a page, `next` the cursor of the following page (or None)."""
    if status is not None and status not in EVENT_STATUSES:
        raise Invalid("status_invalid", f"status must be one of {', '.join(EVENT_STATUSES)}")
    before = _uncursor(cursor) if cursor else None
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
                    "received_at": iso(r["received_at"]),
                    "processed_at": iso(r["processed_at"])} for r in page],
        "next": _cursor(page[-1]["received_at"], page[-1]["id"]) if len(rows) > limit else None,
    }


async def replay_event(pool: asyncpg.Pool, event_id: str) -> tuple[int, str]:
    """Make a failed event pending again; (its row id, its status now).

    A processed or ignored event is left as it is: replaying it changes nothing.
    """
    row = await pool.fetchrow(
        """update events set status = 'pending', attempts = 0, processed_at = null,
                  reason = 'replayed after: ' || coalesce(reason, '')
           where event_id = $1 and status = 'failed'
           returning id, status""",
        event_id)
    if row is None:
        row = await pool.fetchrow("select id, status from events where event_id = $1",
                                  event_id)
    if row is None:
        raise NotFound("event", event_id)
    return row["id"], row["status"]
