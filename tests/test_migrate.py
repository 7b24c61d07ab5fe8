"""Migrations: applied once, in order, by any number of concurrent runners."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from tests.conftest import drop_database, with_path
from worker.migrate import migrate, migration_files


async def test_concurrent_runners_apply_each_migration_once(database_url: str) -> None:
    url = with_path(database_url, f"/settle_mig_{uuid.uuid4().hex[:8]}")
    try:
        results = await asyncio.gather(*(migrate(url) for _ in range(4)))
        applied = [name for result in results for name in result]
        assert sorted(applied) == [path.name for _, path in migration_files()]
        assert await migrate(url) == []
        conn = await asyncpg.connect(url)
        try:
            versions = await conn.fetch("select version from schema_migrations order by version")
            assert [r["version"] for r in versions] == [n for n, _ in migration_files()]
            assert await conn.fetchval("select to_regclass('events') is not null")
        finally:
            await conn.close()
    finally:
        await drop_database(url)


def test_migration_files_are_numbered_and_unique() -> None:
    numbers = [n for n, _ in migration_files()]
    assert numbers == sorted(set(numbers)) and numbers[0] == 1


async def test_outbox_rows_owed_before_0008_get_their_invoice(database_url: str) -> None:
    from core.db import connect

    url = with_path(database_url, f"/settle_mig_{uuid.uuid4().hex[:8]}")
    conn = await connect(url, create=True)
    try:
        files = dict(migration_files())
        for number in sorted(n for n in files if n < 8):
            await conn.execute(files[number].read_text())
        await conn.execute(
            """insert into customers (id, email) values ('cus_1', 'a@example.com');
               insert into invoices (id, customer_id, number, currency, total, pay_token)
               values ('inv_1', 'cus_1', 'N-1', 'usd', 1000, 't1'),
                      ('inv_2', 'cus_1', 'N-2', 'usd', 1000, 't2');
               insert into payments (id, invoice_id, currency, status)
               values ('pi_2', 'inv_2', 'usd', 'processing');
               insert into checkout_sessions (id, invoice_id, amount, currency, url)
               values ('cs_1', 'inv_1', 1000, 'usd', 'https://checkout.test/cs_1');
               insert into outbox (kind, key, payload) values
                   ('email', 'mail:invoice_paid:inv_1:1', '{"kind": "invoice_paid", "invoice_id": "inv_1"}'),
                   ('expire_checkout', 'expire:cs_1', '{"processor": "stripe", "session_id": "cs_1"}'),
                   ('refund', 'refund-excess:pi_2', '{"processor": "stripe", "payment_id": "pi_2"}'),
                   ('refund', 'refund:gone', '{"processor": "stripe", "payment_id": "pi_gone"}')""")
        await conn.execute(files[8].read_text())
        rows = await conn.fetch("select key, invoice_id from outbox order by id")
        assert [(r["key"], r["invoice_id"]) for r in rows] == [
            ("mail:invoice_paid:inv_1:1", "inv_1"), ("expire:cs_1", "inv_1"),
            ("refund-excess:pi_2", "inv_2"), ("refund:gone", None)]
    finally:
        await conn.close()
        await drop_database(url)


async def test_0019_puts_refund_statuses_in_settles_words_and_drops_processor_defaults(
        database_url: str) -> None:
    from core.db import connect

    url = with_path(database_url, f"/settle_mig_{uuid.uuid4().hex[:8]}")
    conn = await connect(url, create=True)
    try:
        files = dict(migration_files())
        for number in sorted(n for n in files if n < 19):
            await conn.execute(files[number].read_text())
        await conn.execute(
            """insert into customers (id, email) values ('cus_1', 'a@example.com');
               insert into invoices (id, customer_id, number, currency, total, pay_token)
               values ('inv_1', 'cus_1', 'N-1', 'usd', 1000, 't1');
               insert into payments (id, invoice_id, currency, status)
               values ('pi_1', 'inv_1', 'usd', 'processing');
               insert into refunds (id, payment_id, invoice_id, amount, purpose, status) values
                   ('re_1', 'pi_1', 'inv_1', 100, 'external', 'requires_action'),
                   ('re_2', 'pi_1', 'inv_1', 100, 'external', 'canceled'),
                   ('re_3', 'pi_1', 'inv_1', 100, 'external', 'succeeded')""")
        await conn.execute(files[19].read_text())
        rows = await conn.fetch("select id, status from refunds order by id")
        assert [(r["id"], r["status"]) for r in rows] == [
            ("re_1", "pending"), ("re_2", "failed"), ("re_3", "succeeded")]
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute("update refunds set status = 'canceled' where id = 're_3'")
        defaults = await conn.fetch(
            """select table_name, column_name from information_schema.columns
               where table_schema = 'public' and column_default ilike '%stripe%'""")
        assert defaults == []
        with pytest.raises(asyncpg.NotNullViolationError):
            await conn.execute("""insert into payments (id, invoice_id, currency, status)
                                  values ('pi_2', 'inv_1', 'usd', 'processing')""")
    finally:
        await conn.close()
        await drop_database(url)
