"""Customers: upserted by the invoicing application's own ids."""

from __future__ import annotations

from typing import Any

import asyncpg

from core.errors import NotFound
from core.tx import Books
from ledger.credit import balances


def portal_url(public_url: str, token: str) -> str:
    """The customer's page (CONTRACT §6): their invoices and credit."""
    return f"{public_url}/c/{token}"


async def upsert_customer(books: Books, customer_id: str, email: str, name: str | None,
                          locale: str = "en") -> tuple[dict[str, Any], bool]:
    """(the customer, created?); `locale` is a tag the caller checked Babel knows."""
    async with books.pool.acquire() as conn:
        created: bool = await conn.fetchval(
            """insert into customers (id, email, name, locale) values ($1, $2, $3, $4)
               on conflict (id) do update
                   set email = excluded.email, name = excluded.name,
                       locale = excluded.locale, updated_at = now()
               returning (xmax = 0)""",
            customer_id, email, name, locale,
        )
        return await customer_view(conn, customer_id, books.public_url), created


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


async def get_customer(books: Books, customer_id: str) -> dict[str, Any]:
    return await customer_view(books.pool, customer_id, books.public_url)
