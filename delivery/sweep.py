"""What the sweeper looks for: rows still owed work after a while, oldest first.

Anything pending in PostgreSQL longer than the sweep delay is queued again,
whether its job was lost with Redis, never enqueued, or ran out of tries.
"""

from __future__ import annotations

from typing import Literal

import asyncpg

Owed = Literal["event", "outbox", "ops"]

_QUERIES: dict[Owed, str] = {
    "event": """select id from events where status = 'pending'
                and received_at < now() - make_interval(secs => $1)
                order by received_at limit $2""",
    "outbox": """select id from outbox where status = 'pending'
                 and next_attempt_at < now() - make_interval(secs => $1)
                 and (lease_until is null or lease_until < now())
                 order by next_attempt_at limit $2""",
    "ops": """select id from ops_jobs where status in ('queued', 'in_progress')
              and created_at < now() - make_interval(secs => $1)
              order by created_at limit $2""",
}


async def stale(pool: asyncpg.Pool, owed: Owed, older_than: float,
                limit: int = 1000) -> list[int | str]:
    rows = await pool.fetch(_QUERIES[owed], float(older_than), limit)
    return [r["id"] for r in rows]
