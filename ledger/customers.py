"""Customers: upserted by the invoicing application's own ids."""

from __future__ import annotations

from typing import Any

from core.tx import Books
from reads.customers import customer_view


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
