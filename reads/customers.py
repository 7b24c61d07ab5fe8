"""A customer as the API shows it, with their credit per currency."""

from __future__ import annotations

from typing import Any

import asyncpg

from core.errors import NotFound
from ledger.context import Urls
from reads.views import portal_url


async def balances(conn: asyncpg.Connection, customer_id: str) -> dict[str, int]:
    """What the customer holds, per currency (those above zero)."""
    rows = await conn.fetch(
        """select currency, balance from credit_balances
           where customer_id = $1 and balance > 0 order by currency""",
        customer_id,
    )
    return {r["currency"]: r["balance"] for r in rows}


async def get_customer(pool: asyncpg.Pool, customer_id: str, *, urls: Urls) -> dict[str, Any]:
    async with pool.acquire() as conn:
        return await customer_view(conn, customer_id, urls.public_url)


async def customer_view(conn: asyncpg.Connection, customer_id: str,
                        public_url: str) -> dict[str, Any]:
    """The customer as the API shows it (CONTRACT §5), read on the caller's connection
    (in its transaction, when it has one open)."""
    row = await conn.fetchrow(
        "select id, email, name, locale, portal_token from customers where id = $1",
        customer_id)
    if row is None:
        raise NotFound("customer", customer_id)
    return {"id": row["id"], "email": row["email"], "name": row["name"],
            "locale": row["locale"], "credit_balance": await balances(conn, customer_id),
            "portal_url": portal_url(public_url, row["portal_token"])}
