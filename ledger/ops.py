"""What operators ask of the record: jobs, events by status, replays, an invoice's story."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime
from typing import Any

import asyncpg

from ledger.errors import Invalid, NotFound

EVENT_STATUSES = ("pending", "processed", "ignored", "failed")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def require_invoice(pool: asyncpg.Pool, invoice_id: str) -> None:
    if not await pool.fetchval("select 1 from invoices where id = $1", invoice_id):
        raise NotFound("invoice", invoice_id)


# --- jobs --------------------------------------------------------------------------------

async def create_job(pool: asyncpg.Pool, kind: str, params: dict[str, Any]) -> str:
    job_id = f"job_{secrets.token_hex(10)}"
    await pool.execute("insert into ops_jobs (id, kind, params) values ($1, $2, $3)",
                       job_id, kind, json.dumps(params))
    return job_id


async def job_view(pool: asyncpg.Pool, job_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("select * from ops_jobs where id = $1", job_id)
    if row is None:
        raise NotFound("job", job_id)
    return {"id": row["id"], "kind": row["kind"], "status": row["status"],
            "result": row["result"], "reason": row["reason"],
            "created_at": _iso(row["created_at"]), "finished_at": _iso(row["finished_at"])}


# --- events ----------------------------------------------------------------------------

def _cursor(received_at: datetime, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{received_at.isoformat()}|{pk}".encode()).decode()


def _uncursor(cursor: str) -> tuple[datetime, int]:
    try:
        stamp, _, pk = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(stamp), int(pk)
    except ValueError:
        raise Invalid("cursor_invalid", "next is not a cursor this service gave") from None


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
                    "received_at": _iso(r["received_at"]),
                    "processed_at": _iso(r["processed_at"])} for r in page],
        "next": _cursor(page[-1]["received_at"], page[-1]["id"]) if len(rows) > limit else None,
    }


async def replay_event(pool: asyncpg.Pool, event_id: str) -> tuple[int, str]:
    """Make a failed event pending again; (its row id, its status now).

    A processed or ignored event is left as it is: replaying it changes nothing.
    """
    row = await pool.fetchrow(
        """update events set status = 'pending', attempts = 0, processed_at = null,
                  reason = 'replayed after: ' || coalesce(reason, '')
           where processor = 'stripe' and event_id = $1 and status = 'failed'
           returning id, status""",
        event_id)
    if row is None:
        row = await pool.fetchrow(
            "select id, status from events where processor = 'stripe' and event_id = $1",
            event_id)
    if row is None:
        raise NotFound("event", event_id)
    return row["id"], row["status"]


# --- an invoice's story -------------------------------------------------------------------

async def invoice_timeline(pool: asyncpg.Pool, invoice_id: str) -> list[dict[str, Any]]:
    """Everything that happened to an invoice, oldest first."""
    await require_invoice(pool, invoice_id)
    rows = await pool.fetch(
        """select created_at as at, 'invoice' as what,
                  'created, total ' || total || ' ' || currency as detail from invoices where id = $1
           union all
           select sent_at, 'invoice', 'sent' from invoices where id = $1 and sent_at is not null
           union all
           select voided_at, 'invoice', 'voided' from invoices where id = $1 and voided_at is not null
           union all
           select received_at, 'event', type || ' ' || event_id || ': ' || status
                  || coalesce(' (' || reason || ')', '')
             from events
            where payload -> 'data' -> 'object' -> 'metadata' ->> 'invoice_id' = $1
           union all
           select created_at, 'payment', id || ' ' || status || ': amount ' || amount
                  || ', applied ' || applied || ', credited ' || credited
                  || ', refunded ' || refunded
             from payments where invoice_id = $1
           union all
           select created_at, 'credit', kind || ' ' || amount || ' ' || currency
             from credit_entries where invoice_id = $1
           union all
           select created_at, 'request', id || ' for ' || amount || ': ' || status
                  || ', reminders ' || reminders_sent
             from payment_requests where invoice_id = $1
           union all
           select created_at, 'email', (payload ->> 'kind') || ' to '
                  || (payload ->> 'to') || ': ' || status || coalesce(' (' || reason || ')', '')
             from outbox where kind = 'email' and payload ->> 'invoice_id' = $1
           order by 1, 2""",
        invoice_id)
    return [{"at": _iso(r["at"]), "what": r["what"], "detail": r["detail"]} for r in rows]
