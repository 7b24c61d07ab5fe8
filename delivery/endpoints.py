"""Webhook endpoints of the invoicing application (CONTRACT §9): upsert by the caller's id,
secrets in the Standard Webhooks form (`whsec_` + base64 of 24 random bytes), rotation
(the previous secret still signs for 24 hours), and each endpoint's message log."""

from __future__ import annotations

import base64
import ipaddress
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from core.errors import Conflict, Invalid, NotFound
from core.tx import Books
from delivery.outbound import EVENT_TYPES, owe_ping
from notify.addresses import is_public
from reads.cursors import decode_cursor, decode_row_cursor, encode_cursor

ROTATION_OVERLAP = timedelta(hours=24)
# The most endpoints an account has (CONTRACT §11): each money change owes a message to
# each of them inside the books' transaction. Only the default account exists, so all.
MAX_ENDPOINTS = 50


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def check_url(url: str, allow_private: bool) -> str:
    """An endpoint URL as §9 allows it, or `422 url_invalid`. What PUT checks, without
    resolving any name: https (http only with OUTBOUND_ALLOW_PRIVATE), a host, no login,
    no whitespace or control character anywhere, and, unless allowed, neither a literal
    address that is not public (`is_public`) nor the name `localhost` or a name under it.
    Names are checked after resolution at every attempt (`notify.webhook`)."""
    # Before parsing: urlsplit silently drops tabs and newlines and strips leading controls,
    # so the URL it judges would not be the one stored.
    if any(c.isspace() or unicodedata.category(c)[0] == "C" for c in url):
        raise Invalid("url_invalid", "the url holds whitespace or a control character")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Invalid("url_invalid", "the url is not a URL") from None
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes or not parts.hostname or len(url) > 2000 \
            or parts.username or parts.password:
        raise Invalid("url_invalid", "the url must be https://host/... "
                                     "(http only with OUTBOUND_ALLOW_PRIVATE=true)")
    if port == 0:
        raise Invalid("url_invalid", "the url's port is not valid")
    if not allow_private:
        try:
            address = ipaddress.ip_address(parts.hostname)
        except ValueError:
            # "foo.localhost." is the same name as "foo.localhost" (the root's dot).
            name = parts.hostname.lower().rstrip(".")
            if name == "localhost" or name.endswith(".localhost"):
                raise Invalid("url_invalid", "the url names this machine") from None
            return url
        if not is_public(address):
            raise Invalid("url_invalid", "the url's address is not a public one")
    return url


@dataclass(frozen=True, slots=True)
class EndpointInput:
    url: str
    events: tuple[str, ...] | None
    description: str | None
    disabled: bool


def endpoint_view(row: asyncpg.Record) -> dict[str, Any]:
    return {"id": row["id"], "url": row["url"],
            "events": list(row["events"]) if row["events"] is not None else list(EVENT_TYPES),
            "description": row["description"], "disabled": row["disabled"],
            "secret": row["secret"], "created_at": row["created_at"].isoformat()}


async def upsert(books: Books, endpoint_id: str,
                 data: EndpointInput) -> tuple[dict[str, Any], bool]:
    """(the endpoint, created?); the secret is made on create and kept on update."""
    events = sorted(set(data.events)) if data.events is not None else None
    async with books.transaction() as conn:
        # Creations take turns: two at MAX_ENDPOINTS - 1 would each count one less than the
        # other makes. The lock is the transaction's, so it ends with it (pgbouncer-safe);
        # the insert's snapshot is taken after it, so it counts what the previous holder
        # committed.
        await conn.execute("select pg_advisory_xact_lock(hashtext('settle.webhook_endpoints'))")
        row = await conn.fetchrow(
            """insert into webhook_endpoints (id, url, events, description, disabled, secret)
               select $1, $2, $3, $4, $5, $6
               where exists (select from webhook_endpoints where id = $1)
                  or (select count(*) from webhook_endpoints) < $7
               on conflict (id) do update set url = excluded.url, events = excluded.events,
                   description = excluded.description, disabled = excluded.disabled,
                   disabled_reason = null, updated_at = now()
               returning *, (xmax = 0) as created""",
            endpoint_id, data.url, events, data.description, data.disabled, new_secret(),
            MAX_ENDPOINTS)
    if row is None:
        raise Conflict("too_many_endpoints",
                       f"an account has at most {MAX_ENDPOINTS} webhook endpoints")
    return endpoint_view(row), bool(row["created"])


async def get(pool: asyncpg.Pool, endpoint_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("select * from webhook_endpoints where id = $1", endpoint_id)
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint_view(row)


async def delete(books: Books, endpoint_id: str) -> None:
    """Gone, and its pending messages with it (failed: nothing left to send them to)."""
    async with books.transaction() as conn:
        if await conn.fetchval("delete from webhook_endpoints where id = $1 returning true",
                               endpoint_id) is None:
            raise NotFound("webhook endpoint", endpoint_id)
        await conn.execute(
            """update outbox set status = 'failed', reason = 'endpoint deleted',
                      lease_until = null, done_at = now()
               where endpoint_id = $1 and status = 'pending'""", endpoint_id)


async def list_endpoints(pool: asyncpg.Pool, cursor: str | None, limit: int) -> dict[str, Any]:
    limit = max(1, min(limit, 100))
    before = _decode(cursor)
    rows = await pool.fetch(
        """select * from webhook_endpoints
           where ($1::timestamptz is null or (created_at, id) < ($1, $2))
           order by created_at desc, id desc limit $3""",
        before[0] if before else None, before[1] if before else "", limit + 1)
    page = rows[:limit]
    return {"endpoints": [endpoint_view(r) for r in page],
            "next": encode_cursor(page[-1]["created_at"], page[-1]["id"])
            if len(rows) > limit else None}


def _decode(cursor: str | None) -> tuple[datetime, str] | None:
    return decode_cursor(cursor) if cursor else None


async def rotate(books: Books, endpoint_id: str) -> dict[str, Any]:
    """A new secret; the one it replaces still signs for ROTATION_OVERLAP."""
    row = await books.pool.fetchrow(
        """update webhook_endpoints set previous_secret = secret, secret = $2,
                  previous_until = now() + make_interval(secs => $3), updated_at = now()
           where id = $1 returning *""",
        endpoint_id, new_secret(), ROTATION_OVERLAP.total_seconds())
    if row is None:
        raise NotFound("webhook endpoint", endpoint_id)
    return endpoint_view(row)


async def ping(books: Books, endpoint_id: str) -> str:
    """Owe a ping to the endpoint; its message id."""
    async with books.transaction() as conn:
        if not await conn.fetchval("select true from webhook_endpoints where id = $1",
                                   endpoint_id):
            raise NotFound("webhook endpoint", endpoint_id)
        message_id: str = await owe_ping(conn, endpoint_id)
        return message_id


async def messages(pool: asyncpg.Pool, endpoint_id: str, status: str | None,
                   cursor: str | None, limit: int) -> dict[str, Any]:
    """The endpoint's messages, newest first."""
    limit = max(1, min(limit, 100))
    if not await pool.fetchval("select true from webhook_endpoints where id = $1", endpoint_id):
        raise NotFound("webhook endpoint", endpoint_id)
    before = decode_row_cursor(cursor) if cursor else None
    rows = await pool.fetch(
        """select id, payload ->> 'message_id' as message_id, payload ->> 'type' as type,
                  status, attempts, last_status_code, reason, next_attempt_at, created_at
           from outbox
           where endpoint_id = $1 and kind = 'webhook' and ($2::text is null or status = $2)
             and ($3::timestamptz is null or (created_at, id) < ($3, $4))
           order by created_at desc, id desc limit $5""",
        endpoint_id, status, before[0] if before else None, before[1] if before else 0,
        limit + 1)
    page = rows[:limit]
    return {"messages": [{"id": r["message_id"], "outbox_id": r["id"], "type": r["type"],
                          "status": r["status"], "attempts": r["attempts"],
                          "last_status_code": r["last_status_code"],
                          "last_error": r["reason"],
                          "next_attempt_at": r["next_attempt_at"].isoformat()
                          if r["status"] == "pending" else None,
                          "created_at": r["created_at"].isoformat()} for r in page],
            "next": encode_cursor(page[-1]["created_at"], page[-1]["id"])
            if len(rows) > limit else None}


# --- what delivery reads and records ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    url: str
    secrets: tuple[str, ...]
    disabled: bool


async def target(pool: asyncpg.Pool, endpoint_id: str) -> Target | None:
    """Where a message goes and the secrets that sign it now; None when deleted."""
    row = await pool.fetchrow(
        """select url, disabled, secret,
                  case when previous_until > now() then previous_secret end as previous
           from webhook_endpoints where id = $1""", endpoint_id)
    if row is None:
        return None
    signing = (row["secret"],) + ((row["previous"],) if row["previous"] else ())
    return Target(row["url"], signing, row["disabled"])


async def disable(books: Books, endpoint_id: str, reason: str) -> None:
    await books.pool.execute(
        """update webhook_endpoints set disabled = true, disabled_reason = $2, updated_at = now()
           where id = $1""", endpoint_id, reason)


async def note_status(books: Books, key: str, status_code: int | None) -> None:
    """What the last attempt of the message under `key` was answered (None: no answer)."""
    await books.pool.execute("update outbox set last_status_code = $2 where key = $1",
                       key, status_code)
