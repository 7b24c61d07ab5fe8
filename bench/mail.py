"""Mail: messages delivered per second by one `worker` to a local SMTP sink, against
aiosmtplib sending the same messages to the same sink directly (a connection each, as
settle opens one per message), measured in the same run.

The sink is aiosmtpd's Sink handler. The clock runs from queueing the mails' jobs to
the last one recorded `done`.

    python -m bench.mail [--messages 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from email.message import EmailMessage

import aiosmtplib

from bench.common import env, free_port, fresh_database, outbox_rate, start, stop, urls, wait_port
from core.db import create_pool
from delivery.outbox import owe_email

AT_ONCE = 4


async def bare_rate(port: int, count: int) -> float:
    pending = list(range(count))

    async def sender() -> None:
        while pending:
            n = pending.pop()
            message = EmailMessage()
            message["From"], message["To"] = "billing@localhost", "ada@example.com"
            message["Subject"], message["Message-ID"] = "Payment received", f"<bench-{n}@x>"
            message.set_content("Thank you: your payment of $10.00 was received.")
            message.add_alternative("<p>Thank you: your payment of $10.00 was received.</p>",
                                    subtype="html")
            await aiosmtplib.send(message, hostname="127.0.0.1", port=port)

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(AT_ONCE)))
    return count / (time.perf_counter() - started)


async def settle_rate(database: str, redis: str, port: int, count: int) -> float:
    pool = await create_pool(database)
    try:
        await pool.execute("insert into customers (id, email) values ('cus_b', 'ada@example.com')")
        await pool.execute(
            """insert into invoices (id, customer_id, number, currency, total, sent_at,
                                     pay_token)
               values ('inv_b', 'cus_b', 'B-1', 'usd', 1000000, now(), 'bench')""")
        async with pool.acquire() as conn, conn.transaction():
            for n in range(count):
                await owe_email(conn, "payment_received", f"bench-{n}", invoice_id="inv_b",
                                to=["ada@example.com"], number="B-1", amount=1_000,
                                remaining=999_000, currency="usd")
        ids = [r["id"] for r in await pool.fetch("select id from outbox order by id")]
    finally:
        await pool.close()
    return await outbox_rate(database, redis, ids, "mails", SMTP_HOST="127.0.0.1", SMTP_PORT=str(port))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=1000)
    args = parser.parse_args()
    database, redis = urls()
    asyncio.run(fresh_database(database))
    port = free_port()
    sink = start([sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}",
                  "-c", "aiosmtpd.handlers.Sink"], env("", redis, "sink"))
    try:
        wait_port(port)
        baseline = asyncio.run(bare_rate(port, args.messages))
        settle = asyncio.run(settle_rate(database, redis, port, args.messages))
    finally:
        stop(sink)
    print(f"mail: {args.messages} messages to a local SMTP sink: aiosmtplib alone "
          f"({AT_ONCE} at once) {baseline:,.0f}/s, settle (1 worker) {settle:,.0f}/s "
          f"({settle / baseline:.0%} of bare)")


if __name__ == "__main__":
    main()
