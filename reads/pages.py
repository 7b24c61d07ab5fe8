"""What the customer's pages show (CONTRACT §6), found by their tokens.

The invoice page (`/i/{token}`) shows one invoice with its payments and
credit notes, the customer's credit in its currency, and, when the customer
is back from Checkout, what became of that payment. The customer's page
(`/c/{token}`) lists their open invoices, the last twelve months' paid ones,
and their credit per currency. Reading only: paying goes through
`ledger.checkout`, using credit through `ledger.invoices.apply_credit`.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from core.errors import NotFound
from ledger import money
from ledger.context import Urls
from ledger.status import STATUS_SQL, is_open, remaining_of
from reads.customers import balances
from reads.views import VIEW_SQL, invoice_url, view_of

# More than a page can usefully show; the customer page says when some were left out.
MOST = 200


async def invoice_id_of(pool: asyncpg.Pool, token: str) -> str:
    """The invoice an invoice page's token names, or NotFound (never echoing the token)."""
    invoice_id: str | None = await pool.fetchval(
        "select id from invoices where view_token = $1", token)
    if invoice_id is None:
        raise NotFound("invoice page", "…")
    return invoice_id


async def currency_of(pool: asyncpg.Pool, token: str) -> str:
    """The currency of the invoice an invoice page's token names (what decides the ways it
    may be paid), or NotFound."""
    currency: str | None = await pool.fetchval(
        "select currency from invoices where view_token = $1", token)
    if currency is None:
        raise NotFound("invoice page", "…")
    return currency


async def invoice_page(pool: asyncpg.Pool, token: str, session_id: str | None, *,
                       urls: Urls) -> dict[str, Any]:
    """An invoice as its customer sees it; `session_id`: the checkout session they came
    back from, whose payment the page says is being confirmed until it is applied."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(VIEW_SQL + " where i.view_token = $1", token)
        if row is None:
            raise NotFound("invoice page", "…")
        customer = await conn.fetchrow(
            "select name, email, locale from customers where id = $1", row["customer_id"])
        credit = await conn.fetchval(
            """select balance from credit_balances
               where customer_id = $1 and currency = $2""",
            row["customer_id"], row["currency"]) or 0
        returned = await _returned(conn, row["id"], session_id) if session_id else None
    # Newest first, as a person reads a history; money that never arrived is shown too (a
    # failed transfer), so the customer knows why it still is owed.
    payments = [_payment(p) for p in reversed(row["payment_rows"])]
    return {
        "invoice": view_of(row, urls),
        "open": is_open(row),
        # The least "Pay another amount" takes now.
        "floor": money.partial_floor(remaining_of(row), row["min_partial_amount"]),
        "sent_at": row["sent_at"],
        "paid_at": row["paid_at"],
        "customer": dict(customer),
        "credit": credit,
        "payments": payments,
        "received": _received(payments),
        "credit_notes": list(reversed(row["credit_note_rows"])),
        "returned": returned,
        "pdf_name": f"invoice-{_filename(row['number'])}.pdf",
    }


def _payment(row: dict[str, Any]) -> dict[str, Any]:
    """One payment as the customer reads it. `method` is settle's word for how it was paid
    (`card`, `bank_transfer`, `direct_debit`, `cash`, `check`, …; None when the processor
    did not say): `present.labels.how_paid(source, method)` says it as a person does.
    `applied` is what counts towards this invoice now (less what refunds and reversals
    took back of it), so the rows' `applied` add up to the invoice's `amount_paid`;
    `credited` went to the customer's credit as excess."""
    return {"date": row.get("received_at") or row["created_at"], "source": row["source"],
            "method": row.get("method"), "amount": row["amount"],
            "applied": row["applied"] - row["refund_from_paid"] - row["reversal_from_paid"],
            "credited": row["credited"], "refunded": row["refunded"],
            # What chargebacks and late failures took back, net of what the bank gave back.
            "reversed": row["reversed"], "status": row["status"]}


def _received(payments: list[dict[str, Any]]) -> dict[str, int]:
    """What the payments received add up to: `applied` is the invoice's `amount_paid`,
    `credited` went to the customer's credit, `returned` was (or is being) sent back;
    `on_its_way` is processing (`debit_on_its_way` the part of it by Direct Debit)."""
    received = [p for p in payments if p["status"] == "succeeded"]
    amount = sum(p["amount"] for p in received)
    applied = sum(p["applied"] for p in received)
    credited = sum(p["credited"] for p in received)
    return {"amount": amount, "applied": applied, "credited": credited,
            "returned": amount - applied - credited,
            "on_its_way": sum(p["amount"] for p in payments if p["status"] == "processing"),
            # Of that, what a Direct Debit is bringing: it takes days, not seconds.
            "debit_on_its_way": sum(p["amount"] for p in payments
                                    if p["status"] == "processing"
                                    and p["method"] == "direct_debit")}


def _filename(number: str) -> str:
    """An invoice number as a file name: letters, digits, dashes."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in number)
    return safe.strip("-")[:60] or "invoice"


async def _returned(conn: asyncpg.Connection, invoice_id: str,
                    session_id: str) -> dict[str, Any] | None:
    """What became of the payment of a session of this invoice: `confirming` (the
    processor has not told settle yet), `processing` (a bank transfer on its way),
    `received`, `failed`; None for a session of another invoice or one that expired
    unpaid."""
    found = await conn.fetchrow(
        """select s.status, s.amount, s.currency, p.status as payment, p.method,
                  p.applied, p.credited, p.excess_pending + p.excess_refunded as returned
           from checkout_sessions s left join payments p on p.id = s.payment_id
           where s.id = $1 and s.invoice_id = $2""",
        session_id[:255], invoice_id)
    if found is None or (found["status"] == "expired" and found["payment"] is None):
        return None
    state = {"succeeded": "received", "processing": "processing",
             "failed": "failed"}.get(found["payment"] or "", "confirming")
    # Of money received: what went to this invoice, to the customer's credit, and what is
    # (being) sent back to them as an overpayment.
    return {"state": state, "amount": found["amount"], "currency": found["currency"],
            # How it is being paid, once the processor said (`direct_debit` takes days).
            "method": found["method"],
            "applied": found["applied"] or 0, "credited": found["credited"] or 0,
            "returned": found["returned"] or 0}


async def customer_page(pool: asyncpg.Pool, token: str, *, urls: Urls) -> dict[str, Any]:
    """A customer's open invoices, those paid in the last twelve months, and their
    credit per currency."""
    async with pool.acquire() as conn:
        customer = await conn.fetchrow(
            "select id, name, email, locale from customers where portal_token = $1", token)
        if customer is None:
            raise NotFound("customer page", "…")
        listed = f"""select i.*, {STATUS_SQL} as status from invoices i
                     where i.customer_id = $1 and ({STATUS_SQL}) = any($2::text[])"""
        unpaid = await conn.fetch(
            listed + " order by i.due_date nulls last, i.created_at, i.id limit $3",
            customer["id"], ["sent", "partially_paid", "overdue"], MOST + 1)
        paid = await conn.fetch(
            listed + """ and i.paid_at > now() - interval '12 months'
                         order by i.paid_at desc, i.id limit $3""",
            customer["id"], ["paid"], MOST + 1)
        credit = await balances(conn, customer["id"])
    return {
        "customer": dict(customer),
        "open": [_listed(r, urls) for r in unpaid[:MOST]],
        "paid": [_listed(r, urls) for r in paid[:MOST]],
        "more": len(unpaid) > MOST or len(paid) > MOST,
        "credit": credit,
    }


def _listed(row: asyncpg.Record, urls: Urls) -> dict[str, Any]:
    return {"number": row["number"], "status": row["status"], "currency": row["currency"],
            "total": row["total"], "remaining": remaining_of(row), "due_date": row["due_date"],
            "paid_at": row["paid_at"], "url": invoice_url(urls.public_url, row["view_token"])}


async def invoice_url_of_link(pool: asyncpg.Pool, token: str, *, urls: Urls) -> str:
    """The invoice page of a pay link (a request's, or an invoice's Pay Now)."""
    view_token: str | None = await pool.fetchval(
        """select i.view_token from invoices i
           where i.pay_token = $1
              or i.id = (select invoice_id from payment_requests where token = $1)""",
        token)
    if view_token is None:
        raise NotFound("pay link", "…")
    return invoice_url(urls.public_url, view_token)
