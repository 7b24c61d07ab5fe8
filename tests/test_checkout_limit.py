"""At most 5 checkout pages per invoice in any 10 minutes (CONTRACT §11): one invoice
link cannot spend the account's processor rate limit."""

from __future__ import annotations


import redis.asyncio as aioredis

from core.limits import CHECKOUT_LIMIT, CheckoutLimit, LocalWindow
from sandbox.stripe import StripeStandIn
from tests.service import Service
from tests.test_pages import partial_invoice, post, sessions_made, text_of


async def test_the_sixth_new_amount_within_the_window_is_429_and_makes_no_session(
        paying: Service, standin: StripeStandIn, redis: aioredis.Redis) -> None:
    svc = paying
    invoice = await partial_invoice(svc)
    for n in range(CHECKOUT_LIMIT):
        made = await post(svc, invoice, "pay", {"what": "amount", "amount": f"{20 + n}"})
        assert made.status == 303, n
        # The same amount again reuses its open session: no call, nothing counted.
        again = await post(svc, invoice, "pay", {"what": "amount", "amount": f"{20 + n}"})
        assert again.headers["Location"] == made.headers["Location"]
    assert sessions_made(standin) == CHECKOUT_LIMIT
    limited = await post(svc, invoice, "pay", {"what": "amount", "amount": "30"})
    assert limited.status == 429
    assert "try again shortly" in text_of(await limited.text())
    assert 'name="amount"' in await limited.text()  # the invoice page itself, again
    assert sessions_made(standin) == CHECKOUT_LIMIT
    # Its Pay Now link is held to the same count.
    held = await svc.open_link(invoice["pay_url"])
    assert held.status == 429 and "try again" in text_of(await held.text())
    assert sessions_made(standin) == CHECKOUT_LIMIT
    # The count is in Redis, under the deployment's queue name.
    assert await redis.keys(f"{svc.settings.queue_name}:checkout-limit:*") == [
        f"{svc.settings.queue_name}:checkout-limit:inv_1".encode()]


async def test_the_window_slides_and_each_invoice_has_its_own(redis: aioredis.Redis) -> None:
    limit = CheckoutLimit(redis, "q-slide", limit=2, window=0.5)
    assert [await limit("inv_a") for _ in range(3)] == [True, True, False]
    assert await limit("inv_b")
    # Older than the window, the first two no longer count (the script drops them).
    key = limit.key("inv_a")
    await redis.zadd(key, {m: float(s) - 10 for m, s in
                           await redis.zrange(key, 0, -1, withscores=True)})
    assert await limit("inv_a")


async def test_with_redis_down_the_limit_is_kept_in_the_process() -> None:
    down = aioredis.from_url("redis://127.0.0.1:9/0")
    limit = CheckoutLimit(down, "q-down")
    try:
        answers = [await limit("inv_a") for _ in range(CHECKOUT_LIMIT + 1)]
    finally:
        await down.aclose()
    assert answers == [True] * CHECKOUT_LIMIT + [False]


def test_the_local_window_forgets_what_left_it() -> None:
    window = LocalWindow(limit=2, window=10)
    assert [window.allow("a", t) for t in (0, 1, 2)] == [True, True, False]
    assert window.allow("a", 10.5)  # the first left the window
    assert not window.allow("a", 10.6)
