"""The real `settle worker`, plus one handler whose effect tests can count.

`settle.test_probe` inserts a row, then sleeps `data.object.sleep` seconds
inside the same transaction, so a test can kill the process mid-job. A worker
started with `PROBE_SLEEP` set sleeps that long instead (the second worker of a
test that must finish what the first one handed back).
"""

from __future__ import annotations

import asyncio
import os

import asyncpg

from ledger.inbox import Event, Outcome, Policy, Registration
from processors.stripe.events import HANDLERS, data_object
from worker.cli import main


async def probe(conn: asyncpg.Connection, event: Event, policy: Policy) -> Outcome:
    await conn.execute("insert into test_probe_effects (event_id) values ($1)", event.event_id)
    sleep = os.environ.get("PROBE_SLEEP") or data_object(event.payload).get("sleep", 0)
    await asyncio.sleep(float(sleep))
    return Outcome("processed")


HANDLERS["settle.test_probe"] = Registration(probe, needs_invoice=False)


if __name__ == "__main__":
    main(["worker"])
