"""How the API shows an invoice, a payment, a credit note and a payment request: pure
functions of their rows, shared by the API's answers and the outbound webhooks' snapshots
(`delivery.outbound`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from ledger.context import Urls
from ledger.status import STATUS_SQL, is_open, remaining_of, status_of


# The customer's three addresses (CONTRACT §6), each written here alone.


def invoice_url(public_url: str, token: str) -> str:
    """The customer's invoice page."""
    return f"{public_url}/i/{token}"


def pay_url(public_url: str, token: str) -> str:
    """A pay link: a payment request's, or an invoice's Pay Now."""
    return f"{public_url}/pay/{token}"


def portal_url(public_url: str, token: str) -> str:
    """The customer's page: their invoices and credit."""
    return f"{public_url}/c/{token}"


def request_view(row: asyncpg.Record | dict[str, Any], public_url: str) -> dict[str, Any]:
    recipients = row["recipients"]
    return {
        "id": row["id"],
        "invoice_id": row["invoice_id"],
        "amount": row["amount"],
        "currency": row["currency"],
        "status": row["status"],
        "url": pay_url(public_url, row["token"]),
        "to": recipients["to"],
        "cc": recipients["cc"],
        "bcc": recipients["bcc"],
        "note": row["note"],
        "reminders_sent": row["reminders_sent"],
        # PostgreSQL's JSON drops a time's trailing zeros ("…:04.12345"): one form always.
        "created_at": (datetime.fromisoformat(row["created_at"])
                       if isinstance(row["created_at"], str) else row["created_at"]).isoformat(),
    }


# One statement for an invoice and everything shown with it, for one invoice or a page.
VIEW_SQL = f"""
select i.*, {STATUS_SQL} as status,
       coalesce((select jsonb_agg(to_jsonb(p) order by p.created_at, p.id)
                 from payments p where p.invoice_id = i.id), '[]') as payment_rows,
       coalesce((select jsonb_agg(to_jsonb(r) order by r.created_at, r.id)
                 from payment_requests r where r.invoice_id = i.id), '[]') as request_rows,
       coalesce((select jsonb_agg(to_jsonb(c) order by c.created_at, c.id)
                 from credit_notes c where c.invoice_id = i.id), '[]') as credit_note_rows
from invoices i"""


def view_of(row: asyncpg.Record | dict[str, Any], urls: Urls) -> dict[str, Any]:
    """An invoice as the API shows it (CONTRACT §5), from a row of VIEW_SQL."""
    return {
        "id": row["id"],
        "number": row["number"],
        "customer_id": row["customer_id"],
        "currency": row["currency"],
        "total": row["total"],
        "amount_paid": row["amount_paid"],
        "amount_credited": row["amount_credited"],
        "amount_credit_noted": row["amount_credit_noted"],
        "amount_remaining": remaining_of(row),
        "status": status_of(row),
        "kind": row["kind"],
        "due_date": row["due_date"].isoformat() if row["due_date"] else None,
        "notify_emails": list(row["notify_emails"]),
        "auto_apply_credit": row["auto_apply_credit"],
        "lines": row["lines"] or [],
        "allow_partial": row["allow_partial"],
        "min_partial_amount": row["min_partial_amount"],
        "pay_url": pay_url(urls.public_url, row["pay_token"])
        if urls.can_pay and is_open(row) else None,
        "invoice_url": invoice_url(urls.public_url, row["view_token"]),
        "payment_requests": [request_view(r, urls.public_url) for r in row["request_rows"]],
        "payments": [payment_view(p) for p in row["payment_rows"]],
        "credit_notes": [credit_note_view(c) for c in row["credit_note_rows"]],
    }


def iso(value: Any) -> str:
    """A time as the API writes it (a row's datetime, or PostgreSQL's JSON text)."""
    # PostgreSQL's JSON drops a time's trailing zeros ("…:04.12345"): one form always.
    return (datetime.fromisoformat(value) if isinstance(value, str) else value).isoformat()


def maybe_iso(value: datetime | None) -> str | None:
    """A time as the API writes it, or None for no time."""
    return value.isoformat() if value else None


def credit_note_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "invoice_id": row["invoice_id"], "amount": row["amount"],
        "pre_payment_amount": row["pre_payment_amount"],
        "post_payment_amount": row["post_payment_amount"],
        "credited_amount": row["credited_amount"], "refunded_amount": row["refunded_amount"],
        "reason": row["reason"], "created_at": iso(row["created_at"]),
    }


def payment_view(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    """A payment as the API shows it (CONTRACT §5)."""
    return {
        "id": row["id"], "source": row["source"], "method": row["method"],
        "amount": row["amount"], "applied": row["applied"], "credited": row["credited"],
        "refunded": row["refunded"], "reversed": row["reversed"], "status": row["status"],
        "payment_request_id": row["payment_request_id"],
        "created_at": iso(row["created_at"]),
    }
