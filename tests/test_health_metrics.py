"""/healthz, /readyz and /metrics (CONTRACT §8)."""

from __future__ import annotations

import json
import re

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
