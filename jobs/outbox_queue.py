"""Queueing outbox jobs (shared by the event job, the sweeper and the outbox job)."""

from __future__ import annotations

import logging

from arq import ArqRedis

log = logging.getLogger("settle.outbox")


def outbox_job_id(queue_name: str, outbox_id: int) -> str:
    return f"{queue_name}:outbox:{outbox_id}"


async def enqueue_outbox(queue: ArqRedis, outbox_id: int) -> bool:
    try:
        job = await queue.enqueue_job(
            "deliver_outbox", outbox_id,
            _job_id=outbox_job_id(queue.default_queue_name, outbox_id))
    except Exception as exc:
        log.warning("enqueue failed; the sweeper will retry",
                    extra={"outbox_id": outbox_id, "error": exc.__class__.__name__})
        return False
    return job is not None


async def enqueue_all(queue: ArqRedis, outbox_ids: list[int]) -> None:
    for outbox_id in outbox_ids:
        await enqueue_outbox(queue, outbox_id)
