"""Opening a pay link: reuse the link's open checkout session or make one (§6).

The processor is passed in (`core.processor.Processor`): the one the customer
chose, or the only one that takes the invoice's currency. This module knows
what a session must say, not how to reach any processor, nor which there are.
No row stays locked while the processor is asked: the link is planned in one short
transaction (with the invoice locked), the session is made with no
transaction open, and it is recorded in a second short transaction that
checks again that the link still takes payments. Two customers opening one
link at once plan the same idempotency key, so the processor gives them one
session.

The invoice page pays through the same three steps: "Pay the rest" is the
invoice's Pay Now, and "Pay another amount" an amount the customer chose,
checked against what remains (and against the merchant's minimum) while the
invoice is locked, at the plan and again at the record.

A link keeps one open session across processors: an open session of the link
made through the chosen processor is reused; one made through another is
retired (its expiry owed) once the new one is recorded, and a session whose
expiry is owed is never offered again. The checkout permit (`core.limits`) is
the invoice's, whichever processor the session is made through.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from core.errors import NotFound
from core.limits import Permit
from core.processor import Processor, SessionMade, SessionSpec
from core.tx import Books
from delivery.outbox import owe_expiry
from ledger import money
from ledger import locks
from ledger.status import is_open, remaining_of, status_of
from reads.views import invoice_url


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str


@dataclass(frozen=True, slots=True)
class Gone:
    """Why the link no longer takes payments: a request or an invoice status,
    "unpayable" (an amount the processor would refuse) or "no_processor"; and the
    invoice page, which a person is sent to instead."""

    reason: str
    invoice_url: str


@dataclass(frozen=True, slots=True)
class Refused:
    """Why an amount the customer chose cannot be paid now (`money.partial_refusal`,
    "partial_not_allowed" or "unpayable", with the processor's words in `detail`)."""

    reason: str
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Limited:
    """The invoice made as many checkout pages as it may for now (`core.limits`); the
    customer tries again shortly."""

    invoice_url: str


@dataclass(frozen=True, slots=True)
class Choice:
    """What a pay link asks for now, for the page where the customer chooses how to pay:
    the amount, what it is for (the invoice, and the request's note), and the invoice
    page."""

    amount: int
    currency: str
    invoice_number: str
    note: str | None
    locale: str | None
    invoice_url: str


@dataclass(frozen=True, slots=True)
class Want:
    """What a session is to pay: a request's link, the invoice's Pay Now link (what
    remains), or an amount the customer chose on the invoice page."""

    invoice_id: str
    request_id: str | None = None
    chosen: int | None = None

    @property
    def source(self) -> str:
        return "link" if self.chosen is None else "customer"


async def open_link(books: Books, token: str, processor: Processor,
                    permit: Permit) -> Redirect | Gone | Limited:
    """GET /pay/{token}: a request's link or an invoice's Pay Now link."""
    async with books.pool.acquire() as conn:
        want = await _link(conn, token)
    made = await _open(books, want, processor, permit)
    assert not isinstance(made, Refused)  # a link's amount is never the customer's
    return made


async def link_choice(books: Books, token: str) -> Choice | Gone:
    """GET /pay/{token} with several ways to pay: what the link pays now, or why it takes
    nothing (as `open_link` would answer). Read only: no row is locked, nothing is made."""
    async with books.pool.acquire() as conn:
        want = await _link(conn, token)
        payable = await _still_payable(conn, books, want, lock=False)
        if isinstance(payable, Gone):
            return payable
        assert not isinstance(payable, Refused)  # a link's amount is never the customer's
        invoice, amount = payable
        found = await conn.fetchrow(
            """select c.locale, r.note from customers c
               left join payment_requests r on r.id = $2
               where c.id = $1""", invoice["customer_id"], want.request_id)
    return Choice(amount, invoice["currency"], invoice["number"], found["note"],
                  found["locale"], _page(books, invoice))


async def pay_on_page(books: Books, view_token: str, processor: Processor, permit: Permit,
                      chosen: int | None) -> Redirect | Gone | Refused | Limited:
    """The invoice page's "Pay the rest" (`chosen` None: what remains, as Pay Now) or
    "Pay another amount" (`chosen`, in minor units)."""
    invoice_id = await books.pool.fetchval(
        "select id from invoices where view_token = $1", view_token)
    if invoice_id is None:
        raise NotFound("invoice page", "…")  # never echo a token
    return await _open(books, Want(invoice_id, chosen=chosen), processor, permit)


async def _open(books: Books, want: Want, processor: Processor,
                permit: Permit) -> Redirect | Gone | Refused | Limited:
    planned = await _plan(books, want, processor)
    if not isinstance(planned, SessionSpec):
        return planned
    # Asked only now, when a session is to be made (a reused one costs the processor
    # nothing), and outside the plan's transaction: no lock is held while Redis answers.
    if not await permit(want.invoice_id):
        return Limited(planned.cancel_url)
    made = await processor.create_checkout(planned)  # no transaction is open
    return await _record(books, want, planned, made, processor)


async def _link(conn: asyncpg.Connection, token: str) -> Want:
    """What a link token pays: a request, or the invoice's Pay Now."""
    request = await conn.fetchrow(
        "select id, invoice_id from payment_requests where token = $1", token)
    if request is not None:
        return Want(request["invoice_id"], request_id=request["id"])
    invoice_id = await conn.fetchval("select id from invoices where pay_token = $1", token)
    if invoice_id is None:
        raise NotFound("pay link", "…")  # never echo a token
    return Want(invoice_id)


def _page(books: Books, invoice: asyncpg.Record) -> str:
    return invoice_url(books.public_url, invoice["view_token"])


async def _still_payable(conn: asyncpg.Connection, books: Books, want: Want, *,
                         lock: bool = True) -> tuple[asyncpg.Record, int] | Gone | Refused:
    """The invoice (locked, unless only read for a page) and what the session charges now,
    or why it takes nothing."""
    if lock:
        invoice = await locks.invoice_or_not_found(conn, want.invoice_id)
    else:  # a read for the choice page: nothing is locked, nothing is made
        invoice = await conn.fetchrow("select * from invoices where id = $1", want.invoice_id)
        if invoice is None:
            raise NotFound("invoice", want.invoice_id)
    request = None
    if want.request_id is not None:
        if lock:
            request = await locks.request(conn, want.request_id)
        else:
            request = await conn.fetchrow(
                "select status, amount from payment_requests where id = $1", want.request_id)
        assert request is not None  # a session's request is never deleted
        if request["status"] != "active":
            return Gone(request["status"], _page(books, invoice))
    if not is_open(invoice):
        return Gone(status_of(invoice), _page(books, invoice))
    left = remaining_of(invoice)
    if want.chosen is not None:
        if not invoice["allow_partial"]:
            return Refused("partial_not_allowed")
        refusal = money.partial_refusal(want.chosen, left=left,
                                        minimum=invoice["min_partial_amount"])
        if refusal is not None:
            return Refused(refusal)
        return invoice, want.chosen
    # Pay Now pays what is outstanding; a request its amount, never more than remains.
    return invoice, left if request is None else min(request["amount"], left)


async def _plan(books: Books, want: Want,
                processor: Processor) -> SessionSpec | Redirect | Gone | Refused:
    async with books.transaction() as conn:
        payable = await _still_payable(conn, books, want)
        if isinstance(payable, (Gone, Refused)):
            return payable
        invoice, amount = payable
        if not processor.configured or not processor.takes(invoice["currency"]):
            return Gone("no_processor", _page(books, invoice))
        refused = processor.amount_refused(amount, invoice["currency"])
        if refused and want.chosen is not None:
            return Refused("unpayable", refused)
        if refused:
            return Gone("unpayable", _page(books, invoice))
        # The link's open session made through this processor; one being retired (its
        # expiry owed, the customer having chosen another way since) is not offered again.
        session = await conn.fetchrow(
            """select s.id, s.url, s.amount from checkout_sessions s
               where s.invoice_id = $1 and s.payment_request_id is not distinct from $2
                 and s.amount_source = $3 and s.processor = $4 and s.status = 'open'
                 and (s.expires_at is null or s.expires_at > now() + interval '10 minutes')
                 and not exists (select 1 from outbox o where o.key = 'expire:' || s.id)
               order by s.created_at desc limit 1""",
            want.invoice_id, want.request_id, want.source, processor.name,
        )
        if session is not None and session["amount"] == amount:
            return Redirect(session["url"])
        if session is not None:
            # An amount no longer outstanding (or no longer chosen): retire that session.
            await owe_expiry(conn, want.invoice_id, session_id=session["id"])
        made_before = await conn.fetchval(
            """select count(*) from checkout_sessions
               where invoice_id = $1 and payment_request_id is not distinct from $2
                 and amount_source = $3""",
            want.invoice_id, want.request_id, want.source,
        )
        email = await conn.fetchval("select email from customers where id = $1",
                                    invoice["customer_id"])
        page = _page(books, invoice)
        link = want.request_id or ("pay-now" if want.chosen is None else "customer")
        return SessionSpec(
            invoice_id=want.invoice_id, invoice_number=invoice["number"],
            payment_request_id=want.request_id, amount=amount, currency=invoice["currency"],
            customer_email=email,
            # Back to the invoice page either way; the processor names its session on it,
            # so the page can say that payment is being confirmed until it is applied.
            success_url=processor.return_url(page), cancel_url=page,
            idempotency_key=f"checkout:{want.invoice_id}:{link}:{amount}:{made_before}",
            amount_source="customer" if want.chosen is not None else None,
        )


async def _record(books: Books, want: Want, spec: SessionSpec, made: SessionMade,
                  processor: Processor) -> Redirect | Gone | Refused:
    async with books.transaction() as conn:
        # Checked again: the link may have been paid, cancelled or voided meanwhile.
        payable = await _still_payable(conn, books, want)
        await conn.execute(
            """insert into checkout_sessions (id, processor, invoice_id, payment_request_id,
                                              amount, currency, url, expires_at,
                                              amount_source)
               values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
               on conflict (id) do nothing""",
            made.id, processor.name, spec.invoice_id, spec.payment_request_id, spec.amount,
            spec.currency, made.url,
            datetime.fromtimestamp(made.expires_at, UTC) if made.expires_at else None,
            want.source,
        )
        if isinstance(payable, (Gone, Refused)):
            await owe_expiry(conn, spec.invoice_id, session_id=made.id)
            return payable
        # One open session per link, whichever way it is paid: the link's sessions made
        # through another processor (the customer chose another way) are retired now that
        # this one is recorded, so only the page the customer went to can still take money.
        others = await conn.fetch(
            """select id from checkout_sessions
               where invoice_id = $1 and payment_request_id is not distinct from $2
                 and amount_source = $3 and status = 'open' and processor <> $4""",
            want.invoice_id, want.request_id, want.source, processor.name)
        for other in others:
            await owe_expiry(conn, spec.invoice_id, session_id=other["id"])
        return Redirect(made.url)


async def session_finished(conn: asyncpg.Connection, session_id: str, status: str, *,
                           payment_id: str | None = None, settled: bool = False) -> None:
    """The processor says a session is complete or expired: it is no longer reused or
    expired. `settled`: its outcome is final (expired, or its payment captured or
    failed), so reconcile need not ask about it again."""
    await conn.execute(
        """update checkout_sessions
              set status = case when status = 'open' then $2 else status end,
                  payment_id = coalesce(payment_id, $3),
                  resolved_at = case when $4 then coalesce(resolved_at, now()) end,
                  updated_at = now()
           where id = $1""",
        session_id, status, payment_id, settled,
    )
