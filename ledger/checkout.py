"""Opening a pay link: reuse the link's open Checkout Session or make one (§6).

The Stripe call itself is passed in (`CreateSession`), so this module knows
what a session must say, not how to reach Stripe. The invoice row stays
locked while a session is made, so two customers opening one link at once
get one session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import asyncpg

from ledger.errors import NotFound
from ledger.invoices import is_open, locked, remaining_of, status_of
from ledger.links import owe_expiry
from ledger.tx import AfterCommit, transaction


@dataclass(frozen=True, slots=True)
class SessionSpec:
    invoice_id: str
    invoice_number: str
    payment_request_id: str | None
    amount: int
    currency: str
    customer_email: str
    success_url: str
    cancel_url: str
    idempotency_key: str

    @property
    def metadata(self) -> dict[str, str]:
        metadata = {"invoice_id": self.invoice_id}
        if self.payment_request_id:
            metadata["payment_request_id"] = self.payment_request_id
        return metadata


@dataclass(frozen=True, slots=True)
class SessionMade:
    id: str
    url: str
    expires_at: int | None


CreateSession = Callable[[SessionSpec], Awaitable[SessionMade]]


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str


@dataclass(frozen=True, slots=True)
class Gone:
    """Why the link no longer takes payments: a request or an invoice status."""

    reason: str


async def open_link(pool: asyncpg.Pool, token: str, public_url: str,
                    create_session: CreateSession, after_commit: AfterCommit) -> Redirect | Gone:
    async with transaction(pool, after_commit) as conn:
        request = await conn.fetchrow(
            "select id, invoice_id from payment_requests where token = $1", token)
        invoice_id = request["invoice_id"] if request else await conn.fetchval(
            "select id from invoices where pay_token = $1", token)
        if invoice_id is None:
            raise NotFound("pay link", "…")  # never echo a token
        invoice = await locked(conn, invoice_id)
        if request is not None:
            request = await conn.fetchrow(
                "select * from payment_requests where id = $1 for update", request["id"])
            if request["status"] != "active":
                return Gone(request["status"])
        if not is_open(invoice):
            return Gone(status_of(invoice))
        # A request pays its amount; Pay Now pays what is outstanding right now.
        amount = request["amount"] if request is not None else remaining_of(invoice)
        request_id = request["id"] if request is not None else None

        session = await conn.fetchrow(
            """select id, url, amount from checkout_sessions
               where invoice_id = $1 and payment_request_id is not distinct from $2
                 and status = 'open'
                 and (expires_at is null or expires_at > now() + interval '10 minutes')
               order by created_at desc limit 1""",
            invoice_id, request_id,
        )
        if session is not None and session["amount"] == amount:
            return Redirect(session["url"])
        if session is not None:
            # Pay Now for an amount no longer outstanding: retire that session.
            await owe_expiry(conn, invoice_id, session_id=session["id"])
        made_before = await conn.fetchval(
            """select count(*) from checkout_sessions
               where invoice_id = $1 and payment_request_id is not distinct from $2""",
            invoice_id, request_id,
        )
        email = await conn.fetchval("select email from customers where id = $1",
                                    invoice["customer_id"])
        link = f"{public_url}/pay/{token}"
        made = await create_session(SessionSpec(
            invoice_id=invoice_id, invoice_number=invoice["number"],
            payment_request_id=request_id, amount=amount, currency=invoice["currency"],
            customer_email=email, success_url=f"{link}/done", cancel_url=link,
            idempotency_key=f"checkout:{invoice_id}:{request_id or 'pay-now'}:{amount}:{made_before}",
        ))
        await conn.execute(
            """insert into checkout_sessions (id, invoice_id, payment_request_id, amount, currency,
                                              url, expires_at)
               values ($1, $2, $3, $4, $5, $6, $7)
               on conflict (id) do nothing""",
            made.id, invoice_id, request_id, amount, invoice["currency"], made.url,
            datetime.fromtimestamp(made.expires_at, UTC) if made.expires_at else None,
        )
        return Redirect(made.url)


async def session_finished(conn: asyncpg.Connection, session_id: str, status: str) -> None:
    """A session Stripe says is complete or expired is no longer reused or expired."""
    await conn.execute(
        """update checkout_sessions set status = $2, updated_at = now()
           where id = $1 and status = 'open'""",
        session_id, status,
    )
