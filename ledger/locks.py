"""Every row lock the books take, and the one order they take them in.

1. the invoice (`invoice`, `invoice_or_not_found`, `invoice_for_payment`);
2. then rows of that invoice: a payment (`payment`, `payment_with_invoice`,
   `processor_payments`), a refund (`refund`, `reported_refund`), a payment
   request (`request`);
3. then the customer's credit balance in a currency (`credit_balance`,
   `credit_balance_and_entries`).

A transaction takes locks in this order only, never back up it (a function here that
takes a later row says which earlier one its caller must hold): two transactions
that want the same rows queue on the first, and neither holds a later row while
it waits for an earlier one, so they never deadlock. Each lock lasts until its
transaction ends; every function here is a step of its caller's transaction.

Outside this module, on purpose:

- the event job's claim (`ledger.inbox._claim`) locks the event and, in the same
  statement, its invoice: one round trip for what every event does first. The event
  row is the inbox's own, locked before anything of the books; its invoice is step 1,
  handed on in `ledger.context.Known` and taken here (`invoice(known=)`) instead of
  being locked again;
- scans that take `for update skip locked` (`delivery.outbound.owe_overdue`): they
  take only rows no one holds, so they never wait, and a row held now is taken by
  the next scan.

(Creating a webhook endpoint takes a transaction-level advisory lock, which no row
lock waits on: `delivery.endpoints.upsert`.)
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from core.errors import NotFound, PermanentError, RetryLater
from ledger.context import Known

# --- 1. the invoice ----------------------------------------------------------------------


async def invoice(conn: asyncpg.Connection, invoice_id: str, *,
                  known: Known | None = None) -> asyncpg.Record | None:
    """The invoice row, locked; None when there is none. The one `known` holds (locked
    with the caller's event, in this transaction) is taken instead of asking again, once."""
    ready = known.take_invoice(invoice_id) if known is not None else None
    if ready is not None:
        return ready
    row: asyncpg.Record | None = await conn.fetchrow(
        "select * from invoices where id = $1 for update", invoice_id)
    return row


async def invoice_or_not_found(conn: asyncpg.Connection, invoice_id: str) -> asyncpg.Record:
    """The invoice row a caller names, locked; NotFound when there is none."""
    row = await invoice(conn, invoice_id)
    if row is None:
        raise NotFound("invoice", invoice_id)
    return row


async def invoice_for_payment(conn: asyncpg.Connection, invoice_id: str, currency: str, *,
                              known: Known | None = None) -> asyncpg.Record:
    """The invoice a payment names, locked; retried while unknown (the application may
    create it a moment later); never applied in another currency."""
    row = await invoice(conn, invoice_id, known=known)
    if row is None:
        raise RetryLater(f"unknown invoice {invoice_id}")
    if row["currency"] != currency:
        raise PermanentError(
            f"currency {currency} does not match invoice {invoice_id} currency {row['currency']}")
    return row


# --- 2. rows of the invoice (its lock held) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Locked:
    """A payment and its invoice, both locked (in that order)."""

    invoice: asyncpg.Record
    payment: asyncpg.Record


async def payment(conn: asyncpg.Connection, payment_id: str) -> asyncpg.Record | None:
    """The payment row, locked; its invoice's lock held by the caller."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "select * from payments where id = $1 for update", payment_id)
    return row


async def payment_with_invoice(conn: asyncpg.Connection, payment_id: str, *,
                               known: Known | None = None) -> Locked | None:
    """The payment and its invoice, locked in the order; None when the payment is unknown."""
    invoice_id = await conn.fetchval("select invoice_id from payments where id = $1",
                                     payment_id)
    if invoice_id is None:
        return None
    locked_invoice = await invoice(conn, invoice_id, known=known)
    locked_payment = await payment(conn, payment_id)
    assert locked_invoice is not None and locked_payment is not None
    return Locked(locked_invoice, locked_payment)


async def processor_payments(conn: asyncpg.Connection, invoice_id: str) -> list[asyncpg.Record]:
    """The invoice's payments received through a processor, newest first, locked; the
    invoice's lock held by the caller."""
    return list(await conn.fetch(
        """select * from payments
           where invoice_id = $1 and status = 'succeeded' and source <> 'manual'
           order by created_at desc, id desc for update""", invoice_id))


async def refund(conn: asyncpg.Connection, refund_id: str) -> asyncpg.Record | None:
    """settle's refund row, locked; its invoice's lock held by the caller."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "select * from refunds where id = $1 for update", refund_id)
    return row


async def reported_refund(conn: asyncpg.Connection, payment_id: str, processor_refund_id: str,
                          settle_id: str | None) -> asyncpg.Record | None:
    """The refund of this payment a processor reports, locked: the row already tied to
    `processor_refund_id`, else settle's own by the id settle put in its metadata
    (`settle_id`) while it is tied to no other; the payment's invoice's lock held by the
    caller."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """select * from refunds
           where payment_id = $3
             and (processor_refund_id = $1
                  or ($2::text is not null and id = $2
                      and (processor_refund_id is null or processor_refund_id = $1)))
           order by (processor_refund_id = $1) desc nulls last limit 1 for update""",
        processor_refund_id, settle_id, payment_id)
    return row


async def request(conn: asyncpg.Connection, request_id: str) -> asyncpg.Record | None:
    """The payment request row, locked; its invoice's lock held by the caller."""
    row: asyncpg.Record | None = await conn.fetchrow(
        "select * from payment_requests where id = $1 for update", request_id)
    return row


# --- 3. the customer's credit balance (last) ---------------------------------------------


async def credit_balance(conn: asyncpg.Connection, customer_id: str, currency: str) -> int:
    """The balance, its row locked until the transaction ends (created at 0 if new)."""
    await conn.execute(
        """insert into credit_balances (customer_id, currency) values ($1, $2)
           on conflict do nothing""",
        customer_id, currency,
    )
    balance: int = await conn.fetchval(
        "select balance from credit_balances where customer_id = $1 and currency = $2 for update",
        customer_id, currency,
    )
    return balance


async def credit_balance_and_entries(conn: asyncpg.Connection, customer_id: str,
                                     currency: str) -> asyncpg.Record | None:
    """The balance, locked, beside what its entries add up to (`should`); None when the
    customer never held that currency."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """select b.balance, coalesce((select sum(amount) from credit_entries e
                                       where e.customer_id = b.customer_id
                                         and e.currency = b.currency), 0) as should
           from credit_balances b where b.customer_id = $1 and b.currency = $2 for update""",
        customer_id, currency)
    return row
