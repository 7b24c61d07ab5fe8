"""The reminder scan: a cron job every REMINDER_SCAN_SECONDS."""

from __future__ import annotations

import logging

from jobs.queueing import enqueue_all
from ledger.requests import owe_due_reminders
from worker.context import WorkerContext

log = logging.getLogger("settle.reminders")


async def send_reminders(ctx: WorkerContext) -> int:
    settings = ctx["settings"]
    queue = ctx["redis"]

    async def after_commit(outbox_ids: list[int]) -> None:
        await enqueue_all(queue, outbox_ids)

    owed = await owe_due_reminders(ctx["pool"], settings.reminder_schedule, settings.public_url,
                                   after_commit)
    if owed:
        log.info("reminders owed", extra={"count": owed})
    return owed
