"""Payment requests and pay links: "pay this much of the invoice now", one active
link per invoice (CONTRACT §5, §6).

An invoice's own Pay Now link (`invoices.pay_token`) and each request's link
are `{PUBLIC_URL}/pay/{token}`; a token is a random secret, never derived
from an id.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.errors import Conflict, Invalid, NotFound
from core.processor import Processor, refused_by_all, takers
from core.tx import Books
from delivery.outbound import owe_event
from delivery.outbox import owe_expiry, owe_request_mail
from ledger import locks
from ledger.context import Known, Urls
from ledger.status import is_open, remaining_of, status_of
from reads.views import pay_url, request_view


@dataclass(frozen=True, slots=True)
class RequestInput:
    amount: int
    to: str | list[str]
    cc: list[str]
    bcc: list[str]
    note: str | None = None
    replace: bool = False


def new_token() -> str:
    """A pay-link secret: 192 random bits, unrelated to any id."""
    return secrets.token_urlsafe(24)


def new_request_id() -> str:
    return f"pr_{secrets.token_hex(12)}"


async def end_active_requests(conn: asyncpg.Connection, invoice_id: str, status: str, *,
                              known: Known) -> None:
    """Supersede (invoice paid) or cancel (invoice voided) the active request, at once,
    and owe the expiry of every open checkout session of the invoice."""
    ended = await conn.fetch(
        """update payment_requests set status = $2, ended_at = now(), updated_at = now()
           where invoice_id = $1 and status = 'active' returning id""",
        invoice_id, status,
    )
    await owe_expiry(conn, invoice_id)
    for row in ended:
        await owe_event(conn, f"payment_request.{status}", invoice_id=invoice_id,
                        object_id=row["id"], known=known)


async def create_request(books: Books, invoice_id: str, data: RequestInput,
                         processors: Sequence[Processor]) -> dict[str, Any]:
    """`processors`: every registered one; the link is made when a configured one takes
    the invoice's currency, for an amount one of those would charge."""
    try:
        async with books.transaction() as conn:
            # The invoice lock serialises creations; the partial unique index is the backstop.
            invoice = await locks.invoice_or_not_found(conn, invoice_id)
            known = Known(books)  # the endpoints, read once for the messages it owes
            can_take = takers(processors, invoice["currency"])
            if not can_take:
                # Nothing is created or mailed: the link could not take the payment.
                raise Conflict("processor_not_configured",
                               f"no processor is configured to take payments in "
                               f"{invoice['currency'].upper()}")
            if not is_open(invoice):
                raise Invalid("invoice_not_open", f"the invoice is {status_of(invoice)}")
            left = remaining_of(invoice)
            if data.amount > left:
                raise Invalid("amount_exceeds_remaining",
                              f"the amount is more than the {left} remaining")
            if invoice["kind"] == "quote_deposit" and data.amount != left:
                raise Invalid("partial_not_allowed", "a quote deposit is requested in full")
            # Refused only when every way to pay it would refuse it: the link offers the
            # ways that take it (handlers.paylinks).
            refused = refused_by_all(can_take, lambda p: p.amount_refused(
                data.amount, invoice["currency"]))
            if refused:
                raise Invalid("amount_invalid", refused)
            active = await conn.fetchval(
                "select id from payment_requests where invoice_id = $1 and status = 'active'",
                invoice_id)
            if active is not None:
                if not data.replace:
                    raise Conflict("active_request_exists",
                                   f"request {active} is active; cancel it or use replace")
                await _end(conn, active, invoice_id, "cancelled", known)
            row = await conn.fetchrow(
                """insert into payment_requests (id, invoice_id, amount, currency, token,
                                                 recipients, note)
                   values ($1, $2, $3, $4, $5, $6, $7) returning *""",
                new_request_id(), invoice_id, data.amount, invoice["currency"], new_token(),
                json.dumps({"to": data.to, "cc": data.cc, "bcc": data.bcc}), data.note,
            )
            await owe_request_mail(conn, row, "payment_request", f"{row['id']}:0",
                                   pay_url(books.public_url, row["token"]))
            await owe_event(conn, "payment_request.created", invoice_id=invoice_id,
                            object_id=row["id"], known=known)
            return request_view(row, books.public_url)
    except asyncpg.UniqueViolationError:
        raise Conflict("active_request_exists", "another request became active first") from None


async def get_request(pool: asyncpg.Pool, request_id: str, *, urls: Urls) -> dict[str, Any]:
    row = await pool.fetchrow("select * from payment_requests where id = $1", request_id)
    if row is None:
        raise NotFound("payment request", request_id)
    return request_view(row, urls.public_url)


async def _locked_request(conn: asyncpg.Connection, request_id: str) -> asyncpg.Record:
    invoice_id = await conn.fetchval(
        "select invoice_id from payment_requests where id = $1", request_id)
    if invoice_id is None:
        raise NotFound("payment request", request_id)
    await locks.invoice_or_not_found(conn, invoice_id)  # the invoice first (ledger.locks)
    row = await locks.request(conn, request_id)
    assert row is not None
    return row


async def _end(conn: asyncpg.Connection, request_id: str, invoice_id: str, status: str,
               known: Known) -> None:
    await conn.execute(
        """update payment_requests set status = $2, ended_at = now(), updated_at = now()
           where id = $1""",
        request_id, status,
    )
    await owe_expiry(conn, invoice_id, request_id=request_id)
    await owe_event(conn, f"payment_request.{status}", invoice_id=invoice_id,
                    object_id=request_id, known=known)


async def request_paid(conn: asyncpg.Connection, invoice_id: str, request_id: str, *,
                       known: Known) -> None:
    """The link a payment came through is paid, if it was still active.

    A capture through a link cancelled or superseded meanwhile changes no
    link: it is money received, applied by the rules like any other.
    """
    paid = await conn.fetchval(
        """update payment_requests set status = 'paid', ended_at = now(), updated_at = now()
           where id = $1 and invoice_id = $2 and status = 'active' returning id""",
        request_id, invoice_id,
    )
    if paid:
        await owe_expiry(conn, invoice_id, request_id=request_id)
        await owe_event(conn, "payment_request.paid", invoice_id=invoice_id,
                        object_id=request_id, known=known)


async def cancel_request(books: Books, request_id: str) -> dict[str, Any]:
    """Takes effect at once: the next GET of the link is a 410; its session is expired."""
    async with books.transaction() as conn:
        row = await _locked_request(conn, request_id)
        if row["status"] in ("paid", "superseded"):
            raise Conflict("request_not_active", f"the request is {row['status']}")
        if row["status"] == "active":
            await _end(conn, request_id, row["invoice_id"], "cancelled", Known(books))
        row = await conn.fetchrow("select * from payment_requests where id = $1", request_id)
        return request_view(row, books.public_url)


async def resend_request(books: Books, request_id: str) -> dict[str, Any]:
    async with books.transaction() as conn:
        row = await _locked_request(conn, request_id)
        if row["status"] != "active":
            raise Conflict("request_not_active", f"the request is {row['status']}")
        row = await conn.fetchrow(
            "update payment_requests set sends = sends + 1 where id = $1 returning *", request_id)
        await owe_request_mail(conn, row, "payment_request", f"{request_id}:{row['sends']}",
                               pay_url(books.public_url, row["token"]))
        return request_view(row, books.public_url)


async def owe_due_reminders(books: Books, schedule: tuple[int, ...]) -> int:
    """Claim every reminder now due and owe its mail; how many.

    The claim is the update itself: a request's `reminders_sent` moves from k to
    k + 1 only while offset k has passed and it is still active, so several
    workers scanning at once each claim different reminders, and one reminder
    is owed once per offset (its key says which).
    """
    async with books.transaction() as conn:
        due = await conn.fetch(
            """update payment_requests set reminders_sent = reminders_sent + 1,
                      updated_at = now()
               where status = 'active' and reminders_sent < cardinality($1::int[])
                 and sent_at + make_interval(secs => ($1::int[])[reminders_sent + 1]) <= now()
               returning *""",
            list(schedule),
        )
        for row in due:
            await owe_request_mail(conn, row, "reminder", f"{row['id']}:{row['reminders_sent']}",
                                   pay_url(books.public_url, row["token"]))
        return len(due)
