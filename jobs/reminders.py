"""The reminder scan: a cron job every REMINDER_SCAN_SECONDS."""

from __future__ import annotations

import logging

from core.services import WorkerContext
from ledger.requests import owe_due_reminders

log = logging.getLogger("settle.reminders")


async def send_reminders(ctx: WorkerContext) -> int:
    services = ctx["services"]
    owed = await owe_due_reminders(services.books, services.settings.reminder_schedule)
    if owed:
        log.info("reminders owed", extra={"count": owed})
    return owed
