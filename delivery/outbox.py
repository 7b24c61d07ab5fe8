"""Owing a side effect: one outbox row per effect, keyed so it is owed once.

Called inside the transaction that makes the effect due (a capture, an
invoice becoming paid, a request created), so the effect exists exactly when
the change does; `core.tx` queues the rows once the transaction commits (each insert
notes its row with `core.tx.owed`), and
`jobs.outbox` performs them. Kinds name what is done, not who does it:
`email`, `refund`, `expire_checkout`, and `webhook` (an outbound message, owed by
`delivery.outbound`).
"""

from __future__ import annotations

import json
from typing import Any, Literal
from uuid import UUID

import asyncpg

from core.tx import Books, owed
from ledger.context import Known, audience_of

MailKind = Literal["invoice_sent", "payment_request", "reminder", "payment_received",
                   "invoice_paid", "credit_issued", "refund_issued", "credit_note_issued",
                   "payment_reversed", "payment_failed"]


async def owe(conn: asyncpg.Connection, kind: str, key: str, payload: dict[str, Any], *,
              invoice_id: str | None) -> None:
    """One side effect, owed once under `key`; `invoice_id` is the invoice it is about
    (operators list side effects with it), None when it is about none."""
    owed(await conn.fetchval(
        """insert into outbox (kind, key, payload, invoice_id) values ($1, $2, $3, $4)
           on conflict (key) do nothing returning id""",
        kind, key, json.dumps(payload), invoice_id,
    ))


async def owe_email(conn: asyncpg.Connection, kind: MailKind, key: str, *, invoice_id: str,
                    to: list[str], cc: list[str] | None = None, bcc: list[str] | None = None,
                    audience: dict[str, Any] | None = None, **context: Any) -> None:
    """A mail; the payload holds what the mail says, as of this moment: with the
    customer's locale (amounts and dates are formatted in it), the invoice's due date,
    and the token of its page, which every mail links (CONTRACT §7). `audience`, when
    the caller has it (`invoice_audience`), saves reading those again."""
    page = audience if audience is not None else await conn.fetchrow(
        """select i.view_token, i.due_date, c.locale
           from invoices i join customers c on c.id = i.customer_id where i.id = $1""",
        invoice_id)
    context = {**context, "locale": page["locale"], "invoice_token": page["view_token"],
               "due_date": page["due_date"].isoformat() if page["due_date"] else None}
    await owe(conn, "email", f"mail:{kind}:{key}",
              {"kind": kind, "invoice_id": invoice_id, "to": to, "cc": cc or [],
               "bcc": bcc or [], "context": context}, invoice_id=invoice_id)


async def owe_refund(conn: asyncpg.Connection, processor: str, payment_id: str,
                     amount: int, *, key: str, reason: str, refund_id: str,
                     invoice_id: str) -> None:
    """A refund of a payment of `invoice_id` through the processor, owed once under `key`;
    `refund_id` is settle's row for it (`ledger.refunds`), which the processor's answer
    completes, and the processor's idempotency key."""
    await owe(conn, "refund", key, {"processor": processor, "payment_id": payment_id,
                                    "amount": amount, "reason": reason,
                                    "refund_id": refund_id, "idempotency_key": refund_id},
              invoice_id=invoice_id)


async def owe_expiry(conn: asyncpg.Connection, invoice_id: str, *,
                     request_id: str | None = None, session_id: str | None = None) -> None:
    """Owe an expiry at the processor for every open checkout session of the invoice
    (or of one of its requests, or one session)."""
    rows = await conn.fetch(
        """insert into outbox (kind, key, payload, invoice_id)
           select 'expire_checkout', 'expire:' || id,
                  jsonb_build_object('processor', processor, 'session_id', id), invoice_id
           from checkout_sessions
           where invoice_id = $1 and status = 'open'
             and ($2::text is null or payment_request_id = $2)
             and ($3::text is null or id = $3)
           on conflict (key) do nothing
           returning id""",
        invoice_id, request_id, session_id,
    )
    for row in rows:
        owed(row["id"])


async def invoice_audience(conn: asyncpg.Connection, invoice_id: str, *,
                           known: Known | None = None) -> dict[str, Any]:
    """The customer and notify_emails of an invoice, with what mails say about it: the
    audience `known` holds for it, else read."""
    ready = known.audience_for(invoice_id) if known is not None else None
    if ready is not None:
        return ready
    row = await conn.fetchrow(
        """select i.number, i.currency, i.total, i.notify_emails, i.view_token, i.due_date,
                  c.email as customer_email, c.name as customer_name,
                  c.locale as customer_locale
           from invoices i join customers c on c.id = i.customer_id where i.id = $1""",
        invoice_id,
    )
    return audience_of(row)


async def owe_request_mail(conn: asyncpg.Connection, request: asyncpg.Record,
                           kind: Literal["payment_request", "reminder"], key: str,
                           url: str) -> None:
    """payment_request or reminder: to the request's own recipients, with its link."""
    recipients = request["recipients"]
    to = recipients["to"] if isinstance(recipients["to"], list) else [recipients["to"]]
    audience = await invoice_audience(conn, request["invoice_id"])
    await owe_email(
        conn, kind, key, invoice_id=request["invoice_id"], to=to, cc=recipients["cc"],
        bcc=recipients["bcc"], audience=audience, amount=request["amount"], currency=request["currency"], url=url,
        note=request["note"], number=audience["number"], customer_name=audience["customer_name"],
        reminder=request["reminders_sent"],
    )


# --- performing: claim, perform (no transaction open), record ---------------------------


async def claim(books: Books, outbox_id: int, lease: float) -> asyncpg.Record | None:
    """Take a pending row for `lease` seconds and count the attempt, in one committed
    statement; None when it is done, failed, or another worker holds it. A worker that
    dies mid-effect leaves the lease to expire: the row is then taken again. The row's
    `lease_token` is this claim's: handing the row back or giving it up requires it."""
    row: asyncpg.Record | None = await books.pool.fetchrow(
        """update outbox set lease_until = now() + make_interval(secs => $2),
                  lease_token = gen_random_uuid(), attempts = attempts + 1
           where id = $1 and status = 'pending'
             and (lease_until is null or lease_until < now())
           returning id, kind, key, payload, attempts, created_at, retried_at, lease_token""",
        outbox_id, lease)
    return row


async def record_done(books: Books, outbox_id: int, result: dict[str, Any]) -> bool:
    """The effect happened; False when it was already recorded (by an earlier call).

    No lease token: done is a fact, not a claim on the row. A worker whose lease expired
    and whose effect then happened records it all the same; the new holder's outcome
    then changes nothing (`status = 'pending'` below), where refusing it would have the
    effect done once more."""
    done: bool = await books.pool.fetchval(
        """update outbox set status = 'done', result = $2, reason = null, lease_until = null,
                  lease_token = null, done_at = now()
           where id = $1 and status = 'pending' returning true""",
        outbox_id, json.dumps(result)) or False
    return done


async def record_failed(conn: asyncpg.Connection, outbox_id: int, token: UUID,
                        reason: str) -> bool:
    """The effect will not happen (a refusal, or 24 hours of trying): listed for operators.
    False when the claim `token` no longer holds the row (nothing recorded). In the caller's
    transaction: the books fall back (`jobs.effects`' `given_up`) in the same one."""
    failed: bool = await conn.fetchval(
        """update outbox set status = 'failed', reason = $3, lease_until = null,
                  lease_token = null, done_at = now()
           where id = $1 and status = 'pending' and lease_token = $2 returning true""",
        outbox_id, token, reason) or False
    return failed


async def record_busy(books: Books, outbox_id: int, token: UUID, delay: float) -> bool:
    """Not attempted at all (its destination was busy): the claim's attempt is given back,
    and the row is due again after `delay` seconds. False when the claim `token` no
    longer holds the row."""
    busy: bool = await books.pool.fetchval(
        """update outbox set attempts = greatest(attempts - 1, 0), lease_until = null,
                  lease_token = null, next_attempt_at = now() + make_interval(secs => $3)
           where id = $1 and status = 'pending' and lease_token = $2 returning true""",
        outbox_id, token, delay) or False
    return busy


async def record_deferred(books: Books, outbox_id: int, token: UUID, reason: str,
                          delay: float) -> bool:
    """Not this time: tried again after `delay` seconds (by its job, or the sweeper).
    False when the claim `token` no longer holds the row."""
    deferred: bool = await books.pool.fetchval(
        """update outbox set reason = $3, lease_until = null, lease_token = null,
                  next_attempt_at = now() + make_interval(secs => $4)
           where id = $1 and status = 'pending' and lease_token = $2 returning true""",
        outbox_id, token, reason, delay) or False
    return deferred
