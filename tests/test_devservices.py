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

import pytest

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
            [sys.executable, "-m", "devtools.devservices", "--", sys.executable, "-c", CHILD],
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
        code = ("import shutil, os, sys; import devtools.devservices as d; "
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


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="only a root user's private PostgreSQL runs as another user")


@needs_root
def test_private_postgres_works_from_a_directory_only_root_can_enter() -> None:
    # As root, in a clone under /root or `mktemp -d` (mode 0700): the postgres user
    # cannot enter it, so the cluster lives elsewhere and is removed on exit.
    work = Path(tempfile.mkdtemp(prefix="settle-devservices-"))
    assert oct(work.stat().st_mode & 0o777) == "0o700"
    try:
        env = dict(os.environ,
                   DATABASE_URL=f"postgresql://postgres@127.0.0.1:{dead_port()}/settle_dev",
                   PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-m", "devtools.devservices", "--", sys.executable, "-c", CHILD],
            cwd=work, env=env, capture_output=True, text=True, timeout=180,
        )
        assert done.returncode == 0, done.stderr
        seen = json.loads(done.stdout)
        assert seen["db"] == "settle_dev"
        data_dir = done.stderr.split("(data in ", 1)[1].split(")", 1)[0]
        assert not data_dir.startswith(str(work))
        assert not Path(data_dir).exists()  # cleaned up on exit
        assert not answers(seen["DATABASE_URL"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


@needs_root
def test_missing_server_is_installed_with_apt_get_as_root() -> None:
    work = Path(tempfile.mkdtemp(prefix="settle-devservices-", dir="/tmp"))
    try:
        bin_dir = work / "bin"
        bin_dir.mkdir()
        installed = work / "installed"
        installed.mkdir()
        real = shutil.which("redis-server") or "/usr/bin/redis-server"
        # A stand-in apt-get: `install ... redis-server` puts a redis-server on the PATH.
        (bin_dir / "apt-get").write_text(
            "#!/bin/sh\n"
            f'echo "$@" >> {work}/apt.log\n'
            'case "$*" in *install*redis-server*)\n'
            f'  printf \'#!/bin/sh\\nexec {real} "$@"\\n\' > {installed}/redis-server\n'
            f"  /bin/chmod +x {installed}/redis-server;;\n"
            "esac\n")
        (bin_dir / "apt-get").chmod(0o755)
        env = dict(os.environ, PATH=f"{bin_dir}:{installed}", PYTHONPATH=str(ROOT),
                   REDIS_URL=f"redis://127.0.0.1:{dead_port()}/0")
        code = ("import os, sys; import devtools.devservices as d; "
                "d.REDIS_ELSEWHERE = (); "
                f"sys.argv = ['x', '--', {sys.executable!r}, '-c', 'print(1)']; d.main()")
        done = subprocess.run([sys.executable, "-c", code], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "installing redis-server with apt-get" in done.stderr
        assert "started a private Redis" in done.stderr
        assert (work / "apt.log").read_text().splitlines() == [
            "update -qq", "install -y -qq --no-install-recommends redis-server"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
