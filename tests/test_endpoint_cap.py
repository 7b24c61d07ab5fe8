"""At most 50 webhook endpoints per account, and each money change owes its messages in
one statement (CONTRACT §9, §11)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from core.settings import Settings
from core.tx import transaction
from delivery import outbound
from delivery.endpoints import MAX_ENDPOINTS
from ledger.context import Known
from tests.conftest import LINKS
from tests.service import Service


async def put(svc: Service, endpoint_id: str, url: str = "https://hooks.example.com/x") -> Any:
    return await svc.client.put(f"/v1/webhook-endpoints/{endpoint_id}", json={"url": url},
                                headers={"Authorization": "Bearer test-token"})


async def fill(db: asyncpg.Pool, count: int) -> None:
    await db.executemany(
        "insert into webhook_endpoints (id, url, secret) values ($1, $2, 'whsec_x')",
        [(f"ep_{n}", "https://hooks.example.com/x") for n in range(count)])


async def test_the_51st_endpoint_is_409_and_an_existing_one_still_updates(
        svc: Service, db: asyncpg.Pool) -> None:
    assert MAX_ENDPOINTS == 50
    await fill(db, 49)
    assert (await put(svc, "ep_last")).status == 201
    refused = await put(svc, "ep_one_more")
    assert refused.status == 409
    assert (await refused.json())["error"]["code"] == "too_many_endpoints"
    updated = await put(svc, "ep_3", "https://hooks.example.com/moved")
    assert updated.status == 200 and (await updated.json())["url"].endswith("/moved")
    assert await db.fetchval("select count(*) from webhook_endpoints") == 50
    # One deleted makes room for one more.
    assert (await svc.client.delete("/v1/webhook-endpoints/ep_0",
                                    headers={"Authorization": "Bearer test-token"})).status == 204
    assert (await put(svc, "ep_one_more")).status == 201


async def test_two_creations_at_49_never_make_51(svc: Service, db: asyncpg.Pool) -> None:
    await fill(db, 48)
    for attempt in range(5):
        answers = await asyncio.gather(*(put(svc, f"ep_race_{attempt}_{n}") for n in range(3)))
        assert await db.fetchval("select count(*) from webhook_endpoints") <= 50
    assert await db.fetchval("select count(*) from webhook_endpoints") == 50
    assert {a.status for a in answers} == {409}


async def test_the_openapi_document_lists_too_many_endpoints(svc: Service) -> None:
    document = await (await svc.client.get("/v1/openapi.json")).json()
    put_op = document["paths"]["/v1/webhook-endpoints/{id}"]["put"]
    assert "too_many_endpoints" in str(put_op["responses"]["409"])


async def test_a_money_change_owes_every_endpoints_message_in_one_statement(
        svc: Service, settings: Settings, db: asyncpg.Pool) -> None:
    await fill(db, 3)
    await svc.invoice("inv_1", 1_000, send=False)
    statements: list[str] = []
    queued: list[list[int]] = []

    async def after_commit(ids: list[int]) -> None:
        queued.append(ids)

    async with transaction(db, after_commit) as conn:
        conn.add_query_logger(lambda record: statements.append(record.query))
        assert await outbound.owe_event(conn, "invoice.sent", invoice_id="inv_1",
                                        known=Known(LINKS)) == 3
    inserts = [q for q in statements if "insert into outbox" in q]
    assert len(inserts) == 1
    rows = await db.fetch("select id, endpoint_id, key from outbox where kind = 'webhook' "
                          "order by id")
    assert {r["endpoint_id"] for r in rows} == {"ep_0", "ep_1", "ep_2"}
    assert len({r["key"] for r in rows}) == 3
    assert queued == [[r["id"] for r in rows]]  # each one noted as owed
