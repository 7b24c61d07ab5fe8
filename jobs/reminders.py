"""The reminder scan: a cron job every REMINDER_SCAN_SECONDS (which also owes the
`invoice.overdue` webhook messages of invoices that passed their due date)."""

from __future__ import annotations

import logging

from core.services import WorkerContext
from delivery.outbound import owe_overdue
from ledger.requests import owe_due_reminders

log = logging.getLogger("settle.reminders")


async def send_reminders(ctx: WorkerContext) -> int:
    services = ctx["services"]
    owed = await owe_due_reminders(services.books, services.settings.reminder_schedule)
    if owed:
        log.info("reminders owed", extra={"count": owed})
    overdue = await owe_overdue(services.books)
    if overdue:
        log.info("overdue messages owed", extra={"count": overdue})
    return owed
