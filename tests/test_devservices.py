"""`make run`/`make test` start private servers when DATABASE_URL/REDIS_URL do not answer."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from tests.conftest import ROOT

CHILD = """
import asyncio, json, os
import asyncpg, redis.asyncio as r
async def main():
    conn = await asyncpg.connect(os.environ["DATABASE_URL"])
    db = await conn.fetchval("select current_database()")
    await conn.close()
    client = r.from_url(os.environ["REDIS_URL"])
    pong = await client.ping()
    await client.aclose()
    print(json.dumps({"db": db, "pong": pong, "DATABASE_URL": os.environ["DATABASE_URL"],
                      "REDIS_URL": os.environ["REDIS_URL"]}))
asyncio.run(main())
"""


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again on exit: nothing listens there


def answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=1).close()
        return True
    except OSError:
        return False


def test_private_servers_start_and_stop_when_urls_do_not_answer() -> None:
    # Not under pytest's 0700 tmp: a private PostgreSQL run as the postgres user must reach it.
    work = Path(tempfile.mkdtemp(prefix="settle-devservices-", dir="/tmp"))
    work.chmod(0o755)
    try:
        env = dict(os.environ,
                   DATABASE_URL=f"postgresql://postgres@127.0.0.1:{dead_port()}/settle_dev",
                   REDIS_URL=f"redis://127.0.0.1:{dead_port()}/2",
                   PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-m", "worker.devservices", "--", sys.executable, "-c", CHILD],
            cwd=work, env=env, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["db"] == "settle_dev" and seen["pong"] is True
        assert seen["REDIS_URL"].endswith("/2")
        assert "started a private PostgreSQL" in done.stderr
        assert "started a private Redis" in done.stderr
        assert (work / ".run" / "postgres" / "data" / "PG_VERSION").exists()
        # Stopped on exit.
        assert not answers(seen["DATABASE_URL"]) and not answers(seen["REDIS_URL"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_missing_server_binary_says_what_to_install() -> None:
    work = Path(tempfile.mkdtemp(prefix="settle-devservices-", dir="/tmp"))
    try:
        env = dict(os.environ, PATH="/nonexistent", PYTHONPATH=str(ROOT),
                   DATABASE_URL=os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/settle"),
                   REDIS_URL=f"redis://127.0.0.1:{dead_port()}/0")
        # A machine without redis-server: the lookups find nothing.
        code = ("import shutil, os, sys; import worker.devservices as d; "
                "d.shutil.which = lambda name: None; os.path.exists = lambda p: False; "
                "sys.argv = ['x', '--', 'true']; d.main()")
        done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 3
        assert done.stderr.strip().splitlines()[-1] == (
            "settle: REDIS_URL does not answer and redis-server is not installed; "
            "install it with: sudo apt-get install redis-server")
    finally:
        shutil.rmtree(work, ignore_errors=True)
