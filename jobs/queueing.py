"""Putting work on the queue: one deterministic job id per row, best effort.

The id is derived from the row (an event, an outbox entry, an ops job), so
the webhook, the sweeper and a replay never queue the same row twice at the
same time. arq's job keys are global to the Redis database, so the queue
name is part of the id: deployments sharing one Redis (QUEUE_NAME) must not
see each other's `event:1`. A failed enqueue loses nothing: the row is still
pending in PostgreSQL and the sweeper queues it again.
"""

from __future__ import annotations

import asyncio
import logging

from arq import ArqRedis

log = logging.getLogger("settle.queue")

FUNCTIONS = {"event": "process_event", "outbox": "deliver_outbox", "ops": "run_ops_job"}


def job_id(queue_name: str, kind: str, ident: int | str) -> str:
    return f"{queue_name}:{kind}:{ident}"


async def enqueue(queue: ArqRedis, kind: str, ident: int | str, *, timeout: float = 2.0) -> bool:
    """True when newly queued; False when already queued, or (logged) Redis is away."""
    try:
        job = await asyncio.wait_for(
            queue.enqueue_job(FUNCTIONS[kind], ident,
                              _job_id=job_id(queue.default_queue_name, kind, ident)),
            timeout)
    except Exception as exc:
        log.warning("enqueue failed; the sweeper will retry",
                    extra={"kind": kind, "ident": ident, "error": exc.__class__.__name__})
        return False
    return job is not None


async def enqueue_all(queue: ArqRedis, outbox_ids: list[int]) -> None:
    for outbox_id in outbox_ids:
        await enqueue(queue, "outbox", outbox_id)
