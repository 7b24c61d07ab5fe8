"""Private Redis servers a test starts itself: a plain one, and a Sentinel watching it.

Each listens on a free port on 127.0.0.1, keeps nothing on disk beyond the
test's temporary directory, and is stopped when its block ends.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from tests.conftest import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _wait_until(ready: subprocess.Popen[bytes], client: redis.Redis, check: str,
                timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.execute_command(*check.split()):
                return
        except (redis.ConnectionError, redis.ResponseError):
            pass
        if ready.poll() is not None:
            raise RuntimeError(f"redis-server exited with {ready.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not answer {check!r} in {timeout}s")
        time.sleep(0.05)


@contextlib.contextmanager
def _running(args: list[str], port: int, check: str) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen([REDIS_SERVER, *args], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
    try:
        _wait_until(process, client, check)
        yield process
    finally:
        client.close()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A Redis server of the test's own: (its port, its process)."""
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
            "--appendonly", "no"]
    with _running(args, port, "PING") as process:
        yield port, process


@contextlib.contextmanager
def sentinel(folder: Path, master_port: int, master: str) -> Iterator[int]:
    """A Redis Sentinel monitoring the server on `master_port` as `master`: its port."""
    port = free_port()
    conf = folder / f"sentinel-{port}.conf"  # a sentinel rewrites its own config file
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {folder}\n"
                    f"sentinel monitor {master} 127.0.0.1 {master_port} 1\n")
    with _running([str(conf), "--sentinel"], port,
                  f"SENTINEL get-master-addr-by-name {master}"):
        yield port
