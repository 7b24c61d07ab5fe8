"""Sending one outbound webhook message (CONTRACT §9) with aiohttp, signed by the
`standardwebhooks` library.

One POST: `webhook-id` (the message's, the same on every attempt),
`webhook-timestamp` (now), `webhook-signature` (`v1,<base64>` by each secret that
signs: the current one, and the previous one for 24 hours after a rotation), a
timeout of at most 15 s (less when the job's budget is shorter), and no redirects.

The address is guarded at every attempt, after name resolution (a resolver that
refuses loopback, private, link-local, metadata and other non-public addresses, so
the checked address is the one connected to), and the scheme must be https, unless
`OUTBOUND_ALLOW_PRIVATE=true`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from standardwebhooks import Webhook

from core.errors import Unavailable, describe
from notify.addresses import is_public

TIMEOUT_SECONDS = 15.0
# How many messages one endpoint is sent at once, per worker process: a slow
# endpoint holds at most this many of the worker's job slots.
PER_ENDPOINT = 4
# How many messages, to all endpoints together, one worker process sends at once: at
# most half of its job places (worker.runner's max_jobs is 20), so several slow or dead
# endpoints together still leave places for the mail and the books.
AT_ONCE = 10
# Of those, how many only an endpoint with nothing under way may take. Endpoints already
# being sent to (hung ones, say) together hold at most AT_ONCE - KEPT_FREE places, so
# three hung endpoints (3 x PER_ENDPOINT > AT_ONCE) cannot take every place: the others'
# messages still go, one at a time each.
KEPT_FREE = 3


class Refused(Exception):
    """The address is not one settle sends to (SSRF guard)."""


class Undelivered(Unavailable):
    """The endpoint did not take the message (no answer in time, no connection, no 2xx):
    tried again. aiohttp's own errors stop here, as this."""


class Busy(Exception):
    """No place for the endpoint now (see `slot`): try again shortly, without counting an
    attempt."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: str


def signature(secrets: tuple[str, ...], message_id: str, at: datetime, body: str) -> str:
    """The `webhook-signature` header: one `v1,...` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets)


def headers(secrets: tuple[str, ...], message_id: str, at: datetime,
            body: str) -> dict[str, str]:
    return {"webhook-id": message_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": signature(secrets, message_id, at, body),
            "Content-Type": "application/json", "User-Agent": "settle-webhooks/1"}


def _check_address(host: str) -> None:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return
    if not is_public(address):
        raise Refused(f"refused address {address}: not a public one")


class GuardedResolver(AbstractResolver):
    """Resolves as aiohttp does, then refuses the name if any address is not public."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        for item in found:
            _check_address(item["host"])
        return found

    async def close(self) -> None:
        await self._inner.close()


_BUSY: dict[str, int] = {}


def under_way() -> int:
    """Messages this process is sending now, to all endpoints."""
    return sum(_BUSY.values())


def has_room(endpoint_id: str) -> bool:
    """Whether `slot` would give the endpoint a place now: fewer than PER_ENDPOINT of its
    own under way, and a place of the process's AT_ONCE, the last KEPT_FREE of which go
    only to an endpoint with nothing under way."""
    held = _BUSY.get(endpoint_id, 0)
    limit = AT_ONCE if held == 0 else AT_ONCE - KEPT_FREE
    return held < PER_ENDPOINT and under_way() < limit


@contextmanager
def slot(endpoint_id: str) -> Iterator[None]:
    """A place for one delivery to the endpoint (`has_room`), or Busy at once (never a wait
    that holds a job slot)."""
    if not has_room(endpoint_id):
        raise Busy(endpoint_id)
    _BUSY[endpoint_id] = _BUSY.get(endpoint_id, 0) + 1
    try:
        yield
    finally:
        _BUSY[endpoint_id] -= 1
        if not _BUSY[endpoint_id]:
            del _BUSY[endpoint_id]


async def post(url: str, body: str, sent_headers: dict[str, str], *, allow_private: bool,
               budget: float) -> Answer:
    """POST once; the answer (any status). Refused for an address the guard refuses,
    Undelivered when no answer came (a connection refused or lost, the time up)."""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (allow_private and parts.scheme == "http"):
        raise Refused(f"refused scheme {parts.scheme!r}: https only")
    if not allow_private:
        _check_address(parts.hostname or "")
    # A connection of its own per attempt: the name is resolved and checked each time.
    resolver = ThreadedResolver() if allow_private else GuardedResolver()
    connector = aiohttp.TCPConnector(resolver=resolver, force_close=True, limit=1)
    timeout = aiohttp.ClientTimeout(total=min(TIMEOUT_SECONDS, budget))
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with session.post(url, data=body.encode(), headers=sent_headers,
                                    allow_redirects=False) as response:
                # A bounded look at the answer, for the log.
                text = (await response.content.read(500)).decode("utf-8", "replace")
                return Answer(response.status, text)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise Undelivered(describe(exc)) from None
    finally:
        await resolver.close()


def now() -> datetime:
    return datetime.now(UTC)



__all__ = ["AT_ONCE", "Answer", "Busy", "KEPT_FREE", "PER_ENDPOINT", "Refused", "TIMEOUT_SECONDS",
           "Undelivered", "has_room", "headers", "now", "post", "slot"]
