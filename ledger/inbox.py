"""The event inbox: record each processor event once, apply it once.

`record_events` is the webhook's only write (all the notices of a delivery in
one statement). `apply_event` first fetches, with no transaction open, what the
processor says now of the resource a thin notice names (when its handler is
registered `fetches`), then claims the event row with `select ... for update`,
runs the handler registered for its type inside the same transaction (the
fetched resource handed to it as `Event.resource`, and the rows the claim read
besides the event as `Event.known`), and marks the row `processed`, `ignored` or
`failed` before committing: the money an event moves and the mark that it moved are
one commit, so running the job twice (or concurrently) changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import asyncpg

from core.errors import PermanentError, RetryLater, describe, is_transient
from core.processor import InboundEvent, Processor
from core.tx import Books
from ledger.context import Known

log = logging.getLogger("settle.inbox")

Status = Literal["pending", "processed", "ignored", "failed"]

# A handler may ask to be retried this many times in all (e.g. an invoice the
# application has not created yet) before the event ends `failed`.
RETRY_LATER_ATTEMPTS = 6
# An unexpected exception (a bug, a payload we cannot read) is retried this many
# times before the event ends `failed` with the error as its reason.
UNEXPECTED_ERROR_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class Event:
    """A recorded event. `payload` is the processor's own shape: only that processor's
    handlers read it."""

    pk: int
    event_id: str
    type: str
    payload: dict[str, Any]
    attempts: int
    received_at: datetime
    processor: str
    # The invoice the processor says the event is about (read at intake), if any.
    invoice_id: str | None
    # What the processor said of the resource a thin notice names, fetched before the
    # transaction opened (`Processor.fetch`); None for a notice that carries its object.
    resource: dict[str, Any] | None = None
    # What the event's claim read besides the event (its invoice, locked; the invoice's
    # audience; the enabled endpoints), for the handler to hand to the ledger (`known=`).
    known: Known = field(kw_only=True, compare=False)


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status
    reason: str | None = None
    event_type: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """What handlers need from the settings."""

    overpayment: Literal["credit", "refund"] = "credit"


Handler = Callable[[asyncpg.Connection, Event, Policy], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Registration:
    handler: Handler
    needs_invoice: bool = True
    # A thin notice: the processor is asked for the resource it names (`Processor.fetch`)
    # before the event's transaction opens.
    fetches: bool = False


# Each processor registers the handlers of its event types (its package's HANDLERS);
# the worker holds them by processor name.
Handlers = Mapping[str, Registration]


# --- recording ------------------------------------------------------------------


async def record_events(books: Books, processor: str,
                        events: list[InboundEvent]) -> list[int | None]:
    """Insert verified events; for each, its row id when new, None when it was
    recorded before (a duplicate delivery, or the same event twice here)."""
    # One statement, so no check-then-insert race: the unique key decides.
    rows = await books.pool.fetch(
        """insert into events (processor, event_id, type, invoice_id, payload)
           select $1, event_id, type, invoice_id, body::jsonb
           from unnest($2::text[], $3::text[], $4::text[], $5::text[]) with ordinality
                as u(event_id, type, invoice_id, body, n)
           order by n
           on conflict (processor, event_id) do nothing
           returning id, event_id""",
        processor, [e.event_id for e in events], [e.type for e in events],
        [e.invoice_id for e in events], [e.body for e in events],
    )
    new = {r["event_id"]: r["id"] for r in rows}
    return [new.pop(e.event_id, None) for e in events]


# --- applying -------------------------------------------------------------------


async def apply_event(books: Books, pk: int, handlers: Mapping[str, Handlers],
                      policy: Policy = Policy(), *,
                      processors: Mapping[str, Processor] | None = None,
                      fetch_within: float = 20.0) -> Outcome:
    """Apply one recorded event exactly once; see the module docstring.

    A thin notice's resource is fetched from its processor (`processors`, by the row's
    own processor) within `fetch_within` seconds, before any transaction opens: a fetch
    that fails transiently (`Unavailable`, a timeout) is retried like any transient
    error, one the processor refuses (`PermanentError`) fails the event with its reason.

    A handler that fails rolls its whole transaction back, so no half-applied
    writes remain; the failure is then recorded on its own. Raises RetryLater
    when the handler asked for it and attempts remain, and lets transient
    errors through for the caller to retry; anything else unexpected is
    retried UNEXPECTED_ERROR_ATTEMPTS times, then recorded.
    """
    pool = books.pool
    try:
        resource = await _fetch(pool, pk, handlers, processors or {}, fetch_within)
        async with books.transaction() as conn:
            row = await _claim(conn, pk)
            if row is None:
                return Outcome("ignored", "no such event")
            if row["event_status"] != "pending":
                # Done by an earlier run (a duplicate job, a replay of a finished event).
                return Outcome(row["event_status"], "already applied", row["event_type"])
            event = Event(pk, row["event_id"], row["event_type"], row["event_payload"],
                          row["event_attempts"], row["event_received_at"],
                          row["event_processor"], row["event_invoice_id"], resource,
                          known=Known.claimed(row, books))
            outcome = await _dispatch(conn, event, handlers.get(event.processor, {}), policy)
            await _finish(conn, pk, outcome)
            return replace(outcome, event_type=event.type)
    except PermanentError as error:
        return await _give_up(pool, pk, str(error))
    except RetryLater as later:
        attempts = await _note_attempt(pool, pk, str(later))
        if attempts is not None and attempts >= RETRY_LATER_ATTEMPTS:
            return await _give_up(pool, pk, str(later), counted=True)
        raise
    except Exception as exc:
        if is_transient(exc):
            await _note_attempt(pool, pk, f"transient: {describe(exc)}")
            raise
        log.exception("event handler failed", extra={"event_pk": pk})
        attempts = await _note_attempt(pool, pk, f"error: {describe(exc)}")
        if attempts is not None and attempts >= UNEXPECTED_ERROR_ATTEMPTS:
            return await _give_up(pool, pk, f"error: {describe(exc)}", counted=True)
        raise


async def _fetch(pool: asyncpg.Pool, pk: int, handlers: Mapping[str, Handlers],
                 processors: Mapping[str, Processor], within: float) -> dict[str, Any] | None:
    """What the processor says now of the resource a pending thin notice names, asked
    with no transaction open and no lock held (the row is read without one: whether it
    is still pending is decided by the claim after). Nothing is read when no registered
    handler fetches (Stripe's notices carry their objects)."""
    if not any(r.fetches for registered in handlers.values() for r in registered.values()):
        return None
    row = await pool.fetchrow(
        "select processor, type, payload from events where id = $1 and status = 'pending'", pk)
    if row is None:
        return None
    registration = handlers.get(row["processor"], {}).get(row["type"])
    processor = processors.get(row["processor"])
    if registration is None or not registration.fetches or processor is None:
        return None
    async with asyncio.timeout(within):
        return await processor.fetch(row["type"], row["payload"])


async def _claim(conn: asyncpg.Connection, pk: int) -> asyncpg.Record | None:
    """Lock the event and, while it is pending, the invoice it names, and read what the
    handler will want next (the invoice's customer, the webhook endpoints to tell): one
    round trip for what every handler does first. The event is locked first (the CTE is
    evaluated before the join), as everywhere else. The answer is the invoice's row (all
    null when the invoice is unknown) beside the event's columns (event_*) and the
    customer's (customer_*)."""
    return await conn.fetchrow(
        """with event as materialized (
               select id, processor, event_id, type, invoice_id, payload, status, attempts,
                      received_at
               from events where id = $1 for update)
           select event.processor as event_processor, event.event_id,
                  event.type as event_type, event.invoice_id as event_invoice_id,
                  event.payload as event_payload, event.status as event_status,
                  event.attempts as event_attempts, event.received_at as event_received_at,
                  customer.email as customer_email, customer.name as customer_name,
                  customer.locale as customer_locale,
                  (select jsonb_agg(jsonb_build_object('id', e.id, 'events', e.events)
                                    order by e.id)
                   from webhook_endpoints e
                   where not e.disabled and event.status = 'pending') as event_endpoints,
                  invoice.*
           from event left join lateral (
               select * from invoices
               where id = event.invoice_id and event.status = 'pending' for update) invoice
           on true
           left join customers customer on customer.id = invoice.customer_id""",
        pk,
    )


async def _dispatch(conn: asyncpg.Connection, event: Event, handlers: Handlers,
                    policy: Policy) -> Outcome:
    registration = handlers.get(event.type)
    if registration is None:
        return Outcome("ignored", f"settle does not act on {event.type}")
    if registration.needs_invoice and event.invoice_id is None:
        return Outcome("ignored", "no metadata.invoice_id")
    return await registration.handler(conn, event, policy)


async def _finish(conn: asyncpg.Connection, pk: int, outcome: Outcome) -> None:
    await conn.execute(
        """update events set status = $2, reason = $3, attempts = attempts + 1,
                  processed_at = now()
           where id = $1""",
        pk, outcome.status, outcome.reason,
    )


async def _give_up(pool: asyncpg.Pool, pk: int, reason: str, *, counted: bool = False) -> Outcome:
    """Record the event failed (this attempt counted unless `counted` already)."""
    event_type = await pool.fetchval(
        """update events set status = 'failed', reason = $2, processed_at = now(),
                  attempts = attempts + $3
           where id = $1 and status = 'pending' returning type""",
        pk, reason[:500], 0 if counted else 1,
    )
    return Outcome("failed", reason, event_type or "")


async def _note_attempt(pool: asyncpg.Pool, pk: int, reason: str) -> int | None:
    """Count a failed attempt on a still-pending event; best effort (the DB may be down)."""
    try:
        attempts: int | None = await pool.fetchval(
            """update events set attempts = attempts + 1, reason = $2
               where id = $1 and status = 'pending' returning attempts""",
            pk, reason[:500],
        )
        return attempts
    except Exception as exc:  # the attempt count is informative; never mask the cause
        if not is_transient(exc):
            raise
        return None
