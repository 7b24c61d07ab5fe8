"""The Procfile's processes, run for real: release, web, and a worker killed mid-job."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import aiohttp
import asyncpg
from aiohttp.test_utils import TestClient

from tests.conftest import (
    ROOT, SETTLE, free_port, process_env, replace, wait_for, wait_until_answers)
from sandbox.events import event, signed
from core.settings import Settings


def test_procfile_has_exactly_the_contract_process_types() -> None:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    assert [line.split(":", 1)[0] for line in lines] == ["release", "web", "worker"]


def test_release_is_idempotent(settings: Settings) -> None:
    for _ in range(2):
        done = subprocess.run([SETTLE, "migrate"], env=process_env(settings), cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert "0 migration(s) applied" in done.stdout


async def test_web_process_serves_health_and_webhooks(settings: Settings,
                                                      db: asyncpg.Pool) -> None:
    port = free_port()
    web = subprocess.Popen([SETTLE, "web"], env=process_env(settings, PORT=str(port)),
                           cwd=ROOT, stderr=subprocess.PIPE, text=True)
    try:
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await wait_until_answers(http, "/healthz")
            async with http.get("/readyz") as r:
                assert r.status == 200
                assert (await r.json())["checks"] == {"postgres": "ok", "redis": "ok"}
            raw, headers = signed(event("settle.test_probe", {"object": "probe"}))
            async with http.post("/webhooks/stripe", data=raw, headers=headers) as r:
                assert r.status == 200
    finally:
        web.send_signal(signal.SIGTERM)
        _, stderr = web.communicate(timeout=20)
    assert await db.fetchval("select count(*) from events") == 1
    # Logs are JSON lines, and carry no signature or secret.
    log_lines = [line for line in stderr.splitlines() if line.strip()]
    assert log_lines and all(json.loads(line) for line in log_lines)
    assert not any(s in stderr for s in (headers["Stripe-Signature"], "v1=", "whsec_"))
    assert any(json.loads(line).get("event_id") for line in log_lines)


async def test_killed_worker_mid_job_event_processed_exactly_once(
        client: TestClient, db: asyncpg.Pool, settings: Settings, redis: object) -> None:
    settings = replace(settings, job_timeout_seconds=5, inbox_sweep_after_seconds=1)
    env = process_env(settings)
    ev = event("settle.test_probe", {"object": "probe", "sleep": 2})
    raw, headers = signed(ev)

    def start_worker() -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "tests.probe_worker"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = start_worker()
    try:
        assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200

        async def mid_job() -> bool:  # the effect is written but not committed
            return bool(await db.fetchval(
                "select count(*) from pg_stat_activity where query like "
                "'insert into test_probe_effects%' and state = 'idle in transaction'"))

        await wait_for(mid_job, timeout=30, interval=0.05)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert await db.fetchval("select status from events") == "pending"

    second = start_worker()
    try:
        async def processed() -> bool:
            return await db.fetchval("select status from events") == "processed"

        await wait_for(processed, timeout=60, interval=0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    assert await db.fetchval("select count(*) from test_probe_effects") == 1
