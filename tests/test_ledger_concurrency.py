"""Two worker processes applying captures to one invoice at the same moment: no lost update."""

from __future__ import annotations

import asyncio
import signal
import subprocess

from tests.conftest import ROOT, SETTLE, process_env, wait_for
from tests.service import Service
from sandbox.events import payment_intent_succeeded, session_completed, signed


async def test_two_workers_never_lose_an_update(svc: Service) -> None:
    await svc.invoice("inv_1", 10_000)
    # 120 captures of 100 on 10,000: 100 apply, 20 are excess; each sent twice, shuffled.
    events = [payment_intent_succeeded("inv_1", 100, f"pi_{i}") for i in range(120)]
    events += [session_completed("inv_1", 100, f"pi_{i}") for i in range(120)]
    bodies = [signed(e) for e in events]

    async def post(raw: bytes, headers: dict[str, str]) -> int:
        return (await svc.client.post("/webhooks/stripe", data=raw, headers=headers)).status

    assert set(await asyncio.gather(*(post(r, h) for r, h in bodies))) == {200}
    workers = [subprocess.Popen([SETTLE, "worker"], env=process_env(svc.settings), cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
               for _ in range(2)]
    try:
        async def all_processed() -> bool:
            return await svc.db.fetchval(
                "select count(*) from events where status = 'processed'") == len(events)

        await wait_for(all_processed, timeout=90, interval=0.2)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            worker.wait(20)
    inv = await svc.get_invoice("inv_1")
    assert (inv["amount_paid"], inv["status"], len(inv["payments"])) == (10_000, "paid", 120)
    assert sum(p["applied"] for p in inv["payments"]) == 10_000
    assert sum(p["credited"] for p in inv["payments"]) == 2_000
    assert await svc.balance() == {"usd": 2_000}
    assert await svc.db.fetchval("select count(*) from credit_entries") == 20
