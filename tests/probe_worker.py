"""The real `settle worker`, plus one handler whose effect tests can count.

`settle.test_probe` inserts a row, then sleeps `data.object.sleep` seconds
inside the same transaction, so a test can kill the process mid-job.
"""

from __future__ import annotations

import asyncio

import asyncpg

from ledger.inbox import Event, Outcome, Policy, handles
from worker.cli import main


@handles("settle.test_probe", needs_invoice=False)
async def probe(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
    await conn.execute("insert into test_probe_effects (event_id) values ($1)", event.event_id)
    await asyncio.sleep(float(event.object.get("sleep", 0)))
    return Outcome("processed")


if __name__ == "__main__":
    main(["worker"])
