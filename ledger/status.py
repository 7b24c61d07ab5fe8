"""What an invoice row says: its status, what remains, whether it is open.

Pure functions of a row (and `STATUS_SQL`, the same status in SQL); the invoice's
lock, taken first by every function that changes money, is `ledger.locks.invoice`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from ledger import money


def today() -> date:
    return datetime.now(UTC).date()


def status_of(row: asyncpg.Record | dict[str, Any], on: date | None = None) -> money.InvoiceStatus:
    return money.invoice_status(
        voided=row["voided_at"] is not None, sent=row["sent_at"] is not None,
        total=row["total"], amount_paid=row["amount_paid"],
        amount_credited=row["amount_credited"], due_date=row["due_date"], today=on or today(),
        amount_credit_noted=row["amount_credit_noted"],
    )


def remaining_of(row: asyncpg.Record | dict[str, Any]) -> int:
    return money.remaining(row["total"], row["amount_paid"], row["amount_credited"],
                           row["amount_credit_noted"])


def is_open(row: asyncpg.Record | dict[str, Any]) -> bool:
    return status_of(row) in money.OPEN_STATUSES


# The same status in SQL (for lists filtered by status in one query); keep the two in step
# (tests/test_merchant.py checks them against each other).
STATUS_SQL = """case when i.voided_at is not null then 'void'
     when i.sent_at is null then 'draft'
     when i.total - i.amount_paid - i.amount_credited - i.amount_credit_noted <= 0 then 'paid'
     when i.due_date is not null and (now() at time zone 'UTC')::date > i.due_date
          then 'overdue'
     when i.amount_paid + i.amount_credited > 0 then 'partially_paid'
     else 'sent' end"""
