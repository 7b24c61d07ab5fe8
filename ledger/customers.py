"""Customers: upserted by the invoicing application's own ids."""

from __future__ import annotations

from typing import Any

import asyncpg

from core.errors import NotFound
from core.tx import Books
from ledger.credit import balances


async def upsert_customer(books: Books, customer_id: str, email: str,
                          name: str | None) -> tuple[dict[str, Any], bool]:
    """(the customer, created?)"""
    async with books.pool.acquire() as conn:
        created: bool = await conn.fetchval(
            """insert into customers (id, email, name) values ($1, $2, $3)
               on conflict (id) do update
                   set email = excluded.email, name = excluded.name, updated_at = now()
               returning (xmax = 0)""",
            customer_id, email, name,
        )
        return await customer_view(conn, customer_id), created


async def customer_view(conn: asyncpg.Connection | asyncpg.Pool, customer_id: str) -> dict[str, Any]:
    row = await conn.fetchrow("select id, email, name from customers where id = $1", customer_id)
    if row is None:
        raise NotFound("customer", customer_id)
    return {**dict(row), "credit_balance": await balances(conn, customer_id)}


async def get_customer(books: Books, customer_id: str) -> dict[str, Any]:
    return await customer_view(books.pool, customer_id)
