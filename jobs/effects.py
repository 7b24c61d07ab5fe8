"""What each kind of outbox row does, each kind one object (`KINDS`).

An `Effect` says how its row is performed (`perform`) and within which network time
(`budget`), how long to wait before trying again (`next_delay`), when it is too old to
be tried again (`too_old`), what it asks before it is given up after errors
(`last_look`), and what the books do when it is given up (`given_up`). `jobs.outbox`
claims a row, hands it to its kind, and records what came of it; it knows no kind.

A performer raises `PermanentError` for a failure that will not pass (recorded, not
retried); anything else is tried again. An adapter (`notify`, a processor) raises
settle's own errors, so nothing here knows a library's.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from core import mail, metrics
from core.errors import PermanentError
from core.processor import Processor, RefundMade
from core.retry import backoff
from core.services import Services
from core.settings import Settings
from delivery import endpoints
from ledger import refunds
from ledger.checkout import session_finished
from ledger.context import Known
from ledger.reconcile import check_session
from notify import render, webhook
from reads import pages

log = logging.getLogger("settle.outbox")

# settle's own: how long an effect is tried before it is given up.
GIVE_UP_AFTER = timedelta(hours=24)
# A processor forgets an idempotency key after its `idempotency_window`: a refund retried
# later than the window less this margin first asks whether it already happened.
KEY_MARGIN = timedelta(hours=1)

# What a performer is given besides the row: a way to record success early (a mail, the
# moment the server accepts it).
Record = Callable[[dict[str, Any]], Awaitable[None]]


class Effect:
    """The rules every kind keeps unless it says otherwise: half the job's time for the
    network, settle's backoff between attempts, given up a day after it was owed (or
    retried by an operator), nothing asked and nothing booked when it is given up."""

    kind: str = ""

    def budget(self, settings: Settings) -> float:
        """An attempt's network time: half the job. The rest is for a mail to wait its
        turn (`Email.turn_wait`) and for recording what happened, which must not be cut
        short."""
        return max(1.0, settings.job_timeout_seconds / 2)

    async def perform(self, services: Services, payload: dict[str, Any], key: str,
                      budget: float, record: Record) -> dict[str, Any]:
        raise NotImplementedError

    def next_delay(self, settings: Settings, attempts: int) -> float:
        return backoff(attempts, base=settings.retry_base_seconds)

    def too_old(self, settings: Settings, attempts: int, since: datetime) -> bool:
        """`since`: when the row was owed, or an operator retried it (which starts the
        clock again)."""
        return datetime.now(UTC) - since > GIVE_UP_AFTER

    async def last_look(self, services: Services, payload: dict[str, Any], key: str,
                        budget: float) -> dict[str, Any] | None:
        """Asked before the effect is given up after errors, with no transaction open:
        what it made after all (then recorded done), or None (given up). A look that
        fails leaves the effect failed for an operator, without `given_up`."""
        return None

    async def given_up(self, conn: asyncpg.Connection, payload: dict[str, Any],
                       reason: str, known: Known) -> None:
        """What the books do when the effect is given up for good, in the transaction
        that records it failed (`known`: that transaction's)."""


def _processor(services: Services, payload: dict[str, Any]) -> Processor:
    """The row's own processor (the one its payment or session went through), whichever
    new checkouts go through now."""
    name = payload.get("processor", services.processor.name)
    processor = services.processor_of(name)
    if processor is None:
        raise PermanentError(f"no processor {name!r} is configured")
    return processor


class Refund(Effect):
    """A refund through the row's processor; its answer moves the books (`ledger.refunds`).
    Given up, the books credit the customer instead (`refunds.refused`), but only once the
    processor has said it made nothing: a refund made is never also credited."""

    kind = "refund"

    async def perform(self, services: Services, payload: dict[str, Any], key: str,
                      budget: float, record: Record) -> dict[str, Any]:
        """Once the idempotency key may be forgotten, every attempt first asks whether the
        refund already happened: the key lasts the processor's `idempotency_window`
        (Stripe's 24 hours), the refund's metadata for ever.
        That is decided by the row's age, never by its attempts: an operator's retry
        (`delivery.backlog.retry_outbox`) counts attempts from 0 again, and the first
        attempt of a row owed long ago (a worker down for a day) is as old.
        """
        processor = _processor(services, payload)
        refund_id = payload.get("refund_id")
        key = payload.get("idempotency_key", key)
        if refund_id is not None:
            if await refunds.given_up(services.pool, refund_id):
                raise PermanentError("the refund was given up and credited instead; "
                                     "ask for a new refund")
        metadata = {"settle_key": key, "settle_refund": refund_id or "",
                    "settle_reason": payload.get("reason", "")}
        async with asyncio.timeout(budget):
            made = await processor.find_refund(payload["payment_id"], key) \
                if payload["age"] > processor.idempotency_window - KEY_MARGIN else None
            if made is None:
                made = await processor.refund(payload["payment_id"], payload["amount"], key,
                                              metadata)
        return await _book_answer(services, refund_id, made)

    async def last_look(self, services: Services, payload: dict[str, Any], key: str,
                        budget: float) -> dict[str, Any] | None:
        """Did the processor make it after all (the last try may have made it and lost
        the answer)? Asked by the idempotency key in the refund's metadata; what it made
        is booked, and None when it made nothing (the books may then fall back to
        credit)."""
        processor = _processor(services, payload)
        async with asyncio.timeout(budget):
            made = await processor.find_refund(payload["payment_id"],
                                               payload.get("idempotency_key", key))
        if made is None:
            return None
        return await _book_answer(services, payload.get("refund_id"), made)

    async def given_up(self, conn: asyncpg.Connection, payload: dict[str, Any],
                       reason: str, known: Known) -> None:
        if payload.get("refund_id") is not None:
            await refunds.refused(conn, payload["refund_id"], reason, known=known)


async def _book_answer(services: Services, refund_id: str | None,
                       made: RefundMade) -> dict[str, Any]:
    """The processor's answer moves the books, in a short transaction of its own."""
    if refund_id is not None:
        async with services.books.transaction() as conn:
            await refunds.answered(conn, refund_id, made.id, made.status, made_at=made.created,
                                   known=Known(services.books))
    return {"refund_id": made.id, "status": made.status}


class ExpireCheckout(Effect):
    """Expire an open checkout session. One that completed meanwhile is asked about and
    its payment applied at once, as reconcile would."""

    kind = "expire_checkout"

    async def perform(self, services: Services, payload: dict[str, Any], key: str,
                      budget: float, record: Record) -> dict[str, Any]:
        processor = _processor(services, payload)
        session_id = payload["session_id"]
        async with asyncio.timeout(budget):
            status = await processor.expire_checkout(session_id, key)
            if status != "expired":
                await check_session(services.books, processor, session_id,
                                    services.settings.overpayment_policy)
        if status == "expired":
            async with services.books.transaction() as conn:
                await session_finished(conn, session_id, status, settled=True)
        return {"session_id": session_id, "status": status}


class Email(Effect):
    """A mail, rendered from its row and handed to the mail server, which may keep it
    waiting its turn (`turn_wait`); recorded the moment the server accepts it."""

    kind = "email"

    @staticmethod
    def turn_wait(settings: Settings) -> float:
        """How long a mail waits for the one message in the acceptance window (then
        Busy)."""
        return settings.job_timeout_seconds / 4

    async def perform(self, services: Services, payload: dict[str, Any], key: str,
                      budget: float, record: Record) -> dict[str, Any]:
        settings = services.settings
        message = render.render(payload, key, settings,
                                attachment=await _attachment(services, payload))
        recipients = list(dict.fromkeys(payload["to"] + payload["cc"] + payload["bcc"]))
        result = {"message_id": message["Message-ID"]}

        async def accepted(response: str) -> None:
            await record({**result, "response": response})

        kind, queue, name = payload["kind"], services.queue, settings.queue_name
        try:
            response = await services.mailer.send(message, recipients, accepted,
                                                  budget=budget, wait=self.turn_wait(settings))
        except mail.Busy:
            raise
        except PermanentError:
            await metrics.record_email(queue, name, kind, "failed")
            raise
        except Exception:
            await metrics.record_email(queue, name, kind, "deferred")
            raise
        await metrics.record_email(queue, name, kind, "sent")
        return {**result, "response": response}


async def _attachment(services: Services, payload: dict[str, Any]) -> render.Attachment | None:
    """`invoice_sent` carries the invoice's PDF, made now from the invoice as it is (its
    page's own builder and store: a state already made is not made again)."""
    if payload["kind"] != "invoice_sent":
        return None
    page = await pages.invoice_page(services.pool, payload["context"]["invoice_token"], None,
                                    urls=services.books)
    return await render.invoice_pdf(page, services.settings)


class Webhook(Effect):
    """One message POSTed to its endpoint, signed (CONTRACT §9): a 2xx is delivered, a 410
    disables the endpoint, a refused address fails it at once, anything else is tried
    again after the delays of WEBHOOK_RETRY_SCHEDULE (`Settings.webhook_retry_schedule`),
    then failed."""

    kind = "webhook"

    def budget(self, settings: Settings) -> float:
        """An outbound webhook waits for no turn, and CONTRACT §9 gives its endpoint 15 s:
        it gets all but a quarter of the job (so 15 s of the default 20)."""
        return max(1.0, settings.job_timeout_seconds * 3 / 4)

    def next_delay(self, settings: Settings, attempts: int) -> float:
        return settings.webhook_retry_schedule[attempts - 1]

    def too_old(self, settings: Settings, attempts: int, since: datetime) -> bool:
        return attempts > len(settings.webhook_retry_schedule)

    async def perform(self, services: Services, payload: dict[str, Any], key: str,
                      budget: float, record: Record) -> dict[str, Any]:
        books, settings = services.books, services.settings
        endpoint_id = payload["endpoint_id"]
        # The place first: a busy endpoint's message bounces before any query of its own.
        with webhook.slot(endpoint_id):
            target = await endpoints.target(books.pool, endpoint_id)
            if target is None:
                raise PermanentError("the endpoint was deleted")
            if target.disabled:
                raise PermanentError("the endpoint is disabled")
            data = payload["data"]
            if payload.get("links_to_resolve"):  # owed before migration 0020
                data = _placeholder_resolved(data, settings.public_url, books.can_pay)
            body = json.dumps({"type": payload["type"], "timestamp": payload["timestamp"],
                               "data": data}, separators=(",", ":"))
            sent = webhook.headers(target.secrets, payload["message_id"], webhook.now(), body)
            try:
                answer = await webhook.post(target.url, body, sent,
                                            allow_private=settings.outbound_allow_private,
                                            budget=budget)
            except webhook.Refused as refused:
                # The address will not become allowed by waiting: failed at once. Which
                # address is for the operator's log only; the message log (its API) names
                # none.
                await endpoints.note_status(books, key, None)
                log.warning("webhook address refused", extra={"endpoint_id": endpoint_id,
                                                              "reason": str(refused)})
                raise PermanentError("address not allowed") from None
            except webhook.Undelivered:
                await endpoints.note_status(books, key, None)
                raise
        await endpoints.note_status(books, key, answer.status)
        if 200 <= answer.status < 300:
            return {"status": answer.status, "message_id": payload["message_id"]}
        if answer.status == 410:
            await endpoints.disable(books, endpoint_id, "410 Gone")
            raise PermanentError("the endpoint answered 410 Gone: it is disabled")
        raise webhook.Undelivered(f"HTTP {answer.status}")


# What the links of a message owed before migration 0020 start with (that migration marked
# those rows, `links_to_resolve`): its snapshot was written before the books knew the
# public URL. Every message owed since carries its real links.
PLACEHOLDER = "settle-public-url/"


def _placeholder_resolved(value: Any, public_url: str, can_pay: bool) -> Any:
    """An old snapshot with its links written against the public URL, and no pay_url when
    no processor takes payments, as it was sent before 0020."""
    if isinstance(value, dict):
        out = {k: _placeholder_resolved(v, public_url, can_pay) for k, v in value.items()}
        if "pay_url" in out and not can_pay:
            out["pay_url"] = None
        return out
    if isinstance(value, list):
        return [_placeholder_resolved(v, public_url, can_pay) for v in value]
    if isinstance(value, str) and value.startswith(PLACEHOLDER):
        return f"{public_url}/{value[len(PLACEHOLDER):]}"
    return value


# Every kind the ledger owes (`delivery.outbox`, `delivery.outbound`), by its name.
KINDS: dict[str, Effect] = {effect.kind: effect
                            for effect in (Email(), Refund(), ExpireCheckout(), Webhook())}


class Unknown(Effect):
    """A row of a kind this worker does not know (owed by a newer release, say): failed
    with its reason, for an operator."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    async def perform(self, services: Services, payload: dict[str, Any], key: str,
                      budget: float, record: Record) -> dict[str, Any]:
        raise PermanentError(f"no performer for {self.kind}")


def effect_of(kind: str) -> Effect:
    return KINDS.get(kind) or Unknown(kind)
