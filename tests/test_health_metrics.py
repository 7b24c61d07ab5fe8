"""/healthz, /readyz and /metrics (CONTRACT §8)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import replace, run_burst
from sandbox.events import event, signed
from worker.app import create_app
from core.settings import Settings


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text, 0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        got = ",".join(sorted((match.group(2) or "").split(","))) if match.group(2) else ""
        if got == wanted:
            return float(match.group(3))
    return 0.0


async def test_healthz_and_readyz(client: TestClient) -> None:
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert await ready.json() == {"ready": True, "checks": {"postgres": "ok", "redis": "ok"}}


async def test_readyz_is_503_when_postgres_is_unreachable(aiohttp_client: object,
                                                          settings: Settings) -> None:
    down = replace(settings, database_url="postgresql://postgres@127.0.0.1:9/settle")
    client = await aiohttp_client(create_app(down))  # type: ignore[operator]
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["checks"]["redis"] == "ok"


async def test_metrics_move(client: TestClient, db: asyncpg.Pool, settings: Settings) -> None:
    before = await (await client.get("/metrics")).text()
    raw, headers = signed(event("customer.created", {"object": "customer"}))
    assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200
    assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200
    assert (await client.post("/webhooks/stripe", data=b"{}", headers={})).status == 400

    during = await (await client.get("/metrics")).text()
    for outcome in ("accepted", "duplicate", "signature_invalid"):
        assert (sample(during, "settle_webhooks_received_total", outcome=outcome)
                == sample(before, "settle_webhooks_received_total", outcome=outcome) + 1)
    assert sample(during, "settle_queue_depth") == 1
    assert sample(during, "settle_events_pending") == 1
    assert "settle_oldest_pending_event_age_seconds" in during

    await run_burst(settings)
    after = await (await client.get("/metrics")).text()
    assert sample(after, "settle_events_processed_total",
                  type="customer.created", outcome="ignored") == 1
    assert sample(after, "settle_event_processing_seconds_count") == 1
    assert sample(after, "settle_queue_depth") == 0
    assert sample(after, "settle_events_pending") == 0
    assert "# TYPE settle_emails_total counter" in after or "settle_emails" in after


def test_log_lines_are_json_without_secrets() -> None:
    import logging

    from core.logs import JsonFormatter

    record = logging.makeLogRecord({"msg": "webhook accepted", "levelname": "INFO",
                                    "name": "settle.webhooks", "event_id": "evt_1"})
    line = json.loads(JsonFormatter().format(record))
    assert line["msg"] == "webhook accepted" and line["event_id"] == "evt_1"


async def test_readyz_says_what_is_down_and_names_no_internal_error(
        aiohttp_client: object, settings: Settings) -> None:
    down = replace(settings, database_url="postgresql://postgres@127.0.0.1:9/settle")
    client = await aiohttp_client(create_app(down))  # type: ignore[operator]
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"ready": False, "checks": {"postgres": "down",
                                                                "redis": "ok"}}


async def test_metrics_with_a_token_answer_only_that_bearer_token(
        aiohttp_client: object, settings: Settings, db: asyncpg.Pool) -> None:
    guarded = replace(settings, metrics_token="m3trics-t0ken")
    client = await aiohttp_client(create_app(guarded))  # type: ignore[operator]
    for header in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "m3trics-t0ken"},
                   {"Authorization": "Bearer test-token"}):  # an API token is not it
        refused = await client.get("/metrics", headers=header)
        assert refused.status == 401, header
        assert (await refused.json())["error"]["code"] == "unauthorized"
    allowed = await client.get("/metrics", headers={"Authorization": "Bearer m3trics-t0ken"})
    assert allowed.status == 200
    assert "settle_webhooks_received_total" in await allowed.text()


def test_metrics_token_is_read_from_the_environment() -> None:
    assert Settings.from_env({"METRICS_TOKEN": " abc "}).metrics_token == "abc"
    assert Settings.from_env({}).metrics_token is None


async def test_no_answer_carries_a_server_header(paying: Any) -> None:
    svc = paying
    client = svc.client
    invoice = await svc.invoice("inv_1", 1_000)
    token_page = urlsplit(invoice["invoice_url"]).path
    raw, headers = signed(event("settle.test_probe", {"object": "probe"}))
    answers = [
        await client.get("/healthz"), await client.get("/readyz"), await client.get("/metrics"),
        await client.get("/v1/invoices/inv_1", headers={"Authorization": "Bearer test-token"}),
        await client.get("/v1/invoices/inv_1"),  # 401
        await client.get("/nowhere"),  # 404
        await client.get(token_page),  # a page
        await client.get("/i/" + "x" * 24),  # a 404 page
        await client.get(token_page + ".pdf"),
        await svc.open_link(invoice["pay_url"]),  # a redirect to Checkout
        await client.post("/webhooks/stripe", data=raw, headers=headers),
        await client.post("/webhooks/stripe", data=b"{}"),  # refused
        await client.get("/v1/openapi.json"),
    ]
    css = re.search(r'href="(/static/[^"]+)"', await answers[6].text())
    assert css is not None
    answers.append(await client.get(css.group(1)))
    assert {a.status for a in answers} >= {200, 303, 400, 401, 404}
    for answer in answers:
        assert "Server" not in answer.headers, (answer.url, answer.status)
