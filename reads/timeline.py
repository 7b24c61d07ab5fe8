"""An invoice's story for operators: everything that happened to it, oldest first."""

from __future__ import annotations

from typing import Any

import asyncpg

from core.errors import NotFound
from reads.views import maybe_iso


async def require_invoice(pool: asyncpg.Pool, invoice_id: str) -> None:
    if not await pool.fetchval("select 1 from invoices where id = $1", invoice_id):
        raise NotFound("invoice", invoice_id)


async def invoice_timeline(pool: asyncpg.Pool, invoice_id: str) -> list[dict[str, Any]]:
    """Everything that happened to an invoice, oldest first."""
    await require_invoice(pool, invoice_id)
    rows = await pool.fetch(
        """select created_at as at, 'invoice' as what,
                  'created, total ' || total || ' ' || currency as detail from invoices where id = $1
           union all
           select sent_at, 'invoice', 'sent' from invoices where id = $1 and sent_at is not null
           union all
           select voided_at, 'invoice', 'voided' from invoices where id = $1 and voided_at is not null
           union all
           select received_at, 'event', type || ' ' || event_id || ': ' || status
                  || coalesce(' (' || reason || ')', '')
             from events
            where invoice_id = $1
           union all
           select created_at, 'payment', source || ' ' || id || coalesce(' (' || method || ')', '')
                  || ' ' || status || ': amount ' || amount
                  || ', applied ' || applied || ', credited ' || credited
                  || ', refunded ' || refunded
             from payments where invoice_id = $1
           union all
           select created_at, 'refund', purpose || ' ' || id || ' of ' || payment_id || ' for '
                  || amount || ': ' || status || coalesce(' (' || reason || ')', '')
             from refunds where invoice_id = $1
           union all
           select created_at, 'credit note', id || ' for ' || amount || ': '
                  || pre_payment_amount || ' off what is owed, ' || credited_amount
                  || ' credited, ' || refunded_amount || ' refunded'
             from credit_notes where invoice_id = $1
           union all
           select created_at, 'credit', kind || ' ' || amount || ' ' || currency
                  || ', balance ' || balance_after
             from credit_entries where invoice_id = $1
           union all
           select created_at, 'request', id || ' for ' || amount || ': ' || status
                  || ', reminders ' || reminders_sent
             from payment_requests where invoice_id = $1
           union all
           select created_at, 'email', (payload ->> 'kind') || ' to '
                  || (payload ->> 'to') || ': ' || status || coalesce(' (' || reason || ')', '')
             from outbox where kind = 'email' and invoice_id = $1
           order by 1, 2""",
        invoice_id)
    return [{"at": maybe_iso(r["at"]), "what": r["what"], "detail": r["detail"]} for r in rows]
