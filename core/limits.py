"""How many Checkout Sessions one invoice may make (CONTRACT §11): at most
`CHECKOUT_LIMIT` in any `CHECKOUT_WINDOW_SECONDS`.

The processor's rate limit is per account, so one invoice link asked for a
new amount again and again could starve every customer's payments. The
ledger asks a `Permit` before each session it is about to make (a reused
open session asks nothing); the one settle runs counts in Redis, so every
`web` process shares one window.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Protocol

from redis.asyncio import Redis

log = logging.getLogger("settle.limits")

CHECKOUT_LIMIT = 5
CHECKOUT_WINDOW_SECONDS = 600
# Redis slower than this counts as down: a customer's page never waits on it for long.
REDIS_TIMEOUT_SECONDS = 1.0


class Permit(Protocol):
    async def __call__(self, invoice_id: str) -> bool:
        """May one more session be made for this invoice now? (A yes is counted.)"""
        ...


# A sliding window in one script: forget what left it, count, and count this one if
# there is room, with nothing between the count and the add.
_SLIDE = """
local key, now, window, limit = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('zremrangebyscore', key, '-inf', now - window)
if redis.call('zcard', key) >= limit then return 0 end
redis.call('zadd', key, now, ARGV[4])
redis.call('pexpire', key, math.ceil(window * 1000))
return 1
"""


class LocalWindow:
    """The same window, in this process only."""

    def __init__(self, limit: int = CHECKOUT_LIMIT,
                 window: float = CHECKOUT_WINDOW_SECONDS) -> None:
        self.limit, self.window = limit, window
        self._made: dict[str, deque[float]] = {}

    def allow(self, invoice_id: str, now: float) -> bool:
        made = self._made.setdefault(invoice_id, deque())
        while made and made[0] <= now - self.window:
            made.popleft()
        if len(made) >= self.limit:
            return False
        made.append(now)
        # Forget invoices whose window is empty, so the map does not grow for ever.
        for key in [k for k, times in self._made.items() if times[-1] <= now - self.window]:
            del self._made[key]
        return True


class CheckoutLimit:
    """The `Permit` settle runs: a sorted set per invoice, `{queue}:checkout-limit:{id}`.

    If Redis does not answer, payments are not blocked: the count falls back to this
    process's own window of the same size (so several `web` processes may then allow a
    few more between them, until Redis is back)."""

    def __init__(self, redis: Redis, queue_name: str, limit: int = CHECKOUT_LIMIT,
                 window: float = CHECKOUT_WINDOW_SECONDS) -> None:
        self.redis, self.queue_name = redis, queue_name
        self.limit, self.window = limit, window
        self.local = LocalWindow(limit, window)

    def key(self, invoice_id: str) -> str:
        return f"{self.queue_name}:checkout-limit:{invoice_id}"

    async def __call__(self, invoice_id: str) -> bool:
        now = time.time()
        try:
            allowed = await asyncio.wait_for(self.redis.eval(  # type: ignore[arg-type]
                _SLIDE, 1, self.key(invoice_id), str(now), str(self.window),
                str(self.limit), f"{now}:{uuid.uuid4().hex}"), REDIS_TIMEOUT_SECONDS)
        except Exception as exc:  # Redis away: never a reason to refuse a payment
            log.warning("checkout limit counted in this process",
                        extra={"error": exc.__class__.__name__})
            return self.local.allow(invoice_id, now)
        return bool(allowed)
