"""A customer as the API shows it, with their credit per currency."""

from __future__ import annotations

from typing import Any

import asyncpg

from core.errors import NotFound


def portal_url(public_url: str, token: str) -> str:
    """The customer's page (CONTRACT §6): their invoices and credit."""
    return f"{public_url}/c/{token}"


async def balances(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str) -> dict[str, int]:
    rows = await conn.fetch(
        """select currency, balance from credit_balances
           where customer_id = $1 and balance > 0 order by currency""",
        customer_id,
    )
    return {r["currency"]: r["balance"] for r in rows}


async def customer_view(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str,
                        public_url: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        "select id, email, name, locale, portal_token from customers where id = $1",
        customer_id)
    if row is None:
        raise NotFound("customer", customer_id)
    return {"id": row["id"], "email": row["email"], "name": row["name"],
            "locale": row["locale"], "credit_balance": await balances(conn, customer_id),
            "portal_url": portal_url(public_url, row["portal_token"])}
