"""The Procfile's processes, run for real: release, web, and a worker killed mid-job."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import redis.asyncio as aioredis
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


def probe_worker(settings: Settings, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tests.probe_worker"],
                            env=process_env(settings, **env), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


async def mid_job(db: asyncpg.Pool) -> bool:
    """The probe's effect is written, not committed: its job is running."""
    return bool(await db.fetchval(
        "select count(*) from pg_stat_activity where query like "
        "'insert into test_probe_effects%' and state = 'idle in transaction'"))


async def stopped(process: subprocess.Popen[str], within: float) -> tuple[float, str]:
    """SIGTERM, then (seconds until the process was gone, its stderr); a process still
    there after `within` seconds is killed and reported as taking forever."""
    process.send_signal(signal.SIGTERM)
    started = time.monotonic()
    try:
        _, stderr = await asyncio.to_thread(process.communicate, timeout=within)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate(timeout=10)
        return float("inf"), stderr
    return time.monotonic() - started, stderr


async def test_sigterm_lets_a_running_job_finish_within_the_grace(
        client: TestClient, db: asyncpg.Pool, settings: Settings) -> None:
    settings = replace(settings, job_timeout_seconds=60)
    raw, headers = signed(event("settle.test_probe", {"object": "probe", "sleep": 2}))
    worker = probe_worker(settings, SHUTDOWN_GRACE_SECONDS="15")
    try:
        assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200
        await wait_for(lambda: mid_job(db), timeout=30, interval=0.05)
        took, stderr = await stopped(worker, within=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    # Done by this worker, which then left at once rather than at the end of its grace.
    assert await db.fetchval("select status from events") == "processed"
    assert await db.fetchval("select count(*) from test_probe_effects") == 1
    assert took < 12, (took, stderr[-2000:])


async def test_sigterm_mid_job_worker_exits_within_its_grace_and_hands_the_job_back(
        client: TestClient, db: asyncpg.Pool, settings: Settings) -> None:
    # A job far longer than the grace, and a job timeout longer still: only the
    # shutdown grace can end it.
    settings = replace(settings, job_timeout_seconds=120, inbox_sweep_after_seconds=1)
    raw, headers = signed(event("settle.test_probe", {"object": "probe", "sleep": 100}))
    first = probe_worker(settings, SHUTDOWN_GRACE_SECONDS="2")
    try:
        assert (await client.post("/webhooks/stripe", data=raw, headers=headers)).status == 200
        await wait_for(lambda: mid_job(db), timeout=30, interval=0.05)
        took, stderr = await stopped(first, within=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(10)
    # The grace (2 s) and a bounded close (5 s at most), with room for a busy machine.
    assert took < 15, (took, stderr[-2000:])
    assert await db.fetchval("select status from events") == "pending"
    assert await db.fetchval("select count(*) from test_probe_effects") == 0

    second = probe_worker(settings, PROBE_SLEEP="0")
    try:
        async def processed() -> bool:
            return await db.fetchval("select status from events") == "processed"

        await wait_for(processed, timeout=60, interval=0.2)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    assert await db.fetchval("select count(*) from test_probe_effects") == 1


async def test_sigterm_while_redis_does_not_answer_still_stops_the_worker(
        settings: Settings, db: asyncpg.Pool, tmp_path: Path) -> None:
    from tests.redis_servers import redis_server

    with redis_server(tmp_path) as (port, redis_process):
        own = replace(settings, redis_url=f"redis://127.0.0.1:{port}/0")
        worker = subprocess.Popen([SETTLE, "worker"], env=process_env(own), cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        master = aioredis.from_url(own.redis_url)
        try:
            async def started() -> bool:  # arq writes its health check once running
                return bool(await master.exists(f"{own.queue_name}:health-check"))

            await wait_for(started, timeout=30)
            # Stopped, not dead: connections stay open and nothing is ever answered, as
            # with a master lost behind a network partition.
            redis_process.send_signal(signal.SIGSTOP)
            await asyncio.sleep(1)
            took, stderr = await stopped(worker, within=40)
        finally:
            redis_process.send_signal(signal.SIGCONT)
            await master.aclose()
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)
    assert took < 15, (took, stderr[-2000:])


async def test_several_web_processes_share_one_port_and_stop_together(
        settings: Settings, db: asyncpg.Pool) -> None:
    port = free_port()
    web = subprocess.Popen([SETTLE, "web"], cwd=ROOT, stderr=subprocess.DEVNULL,
                           env=process_env(settings, PORT=str(port), WEB_PROCESSES="3"))
    try:
        children = await wait_for(lambda: _children(web.pid, 3), timeout=20, interval=0.1)
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as http:
            await wait_until_answers(http, "/healthz")
            for n in range(30):
                raw, headers = signed(event("settle.test_probe", {"object": "probe", "n": n}))
                # A fresh connection each time, so the kernel may hand it to any child.
                async with http.post("/webhooks/stripe", data=raw,
                                     headers={**headers, "Connection": "close"}) as r:
                    assert r.status == 200
    finally:
        web.send_signal(signal.SIGTERM)
        code = web.wait(timeout=20)
    assert code == 0
    assert await db.fetchval("select count(*) from events") == 30
    # Every child went with the parent.
    assert not any(Path(f"/proc/{child}").exists() for child in children)


async def _children(pid: int, count: int) -> list[int] | None:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    pids = [int(p) for p in found.stdout.split()]
    return pids if len(pids) == count else None
