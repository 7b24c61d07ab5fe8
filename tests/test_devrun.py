"""`make run`: loopback only, and whatever ends it, every process it started is gone.

The run is driven as a terminal would drive it: in a process group of its own,
its output piped (`make run | tee log`), and the signal sent to the whole group.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from core.settings import Settings
from tests.conftest import ROOT, free_port, process_env, wait_for


def _parents() -> dict[int, int]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            found[int(entry.name)] = int(fields[1])
    return found


def descendants(pid: int) -> set[int]:
    parents = _parents()
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        children = {child for child, ppid in parents.items() if ppid == parent}
        found |= children
        frontier.extend(children)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class Run:
    """`python -m devtools.devrun` (what `make run` runs) with private ports."""

    def __init__(self, settings: Settings, *, command: tuple[str, ...] = (),
                 cwd: Path = ROOT, **extra: str) -> None:
        self.ports = {name: free_port() for name in ("PORT", "SANDBOX_PORT", "RECEIVER_PORT",
                                                      "SMTP_PORT", "GOCARDLESS_SANDBOX_PORT")}
        env = process_env(settings, SMTP_HOST="127.0.0.1",
                          PUBLIC_URL=f"http://localhost:{self.ports['PORT']}",
                          **{name: str(port) for name, port in self.ports.items()}, **extra)
        for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "GOCARDLESS_ACCESS_TOKEN",
                     "GOCARDLESS_API_BASE", "HOST"):
            env.pop(name, None)
        self.process = subprocess.Popen(
            [*command, sys.executable, "-m", "devtools.devrun"], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        self.output = b""
        self.tree: set[int] = set()

    def read_all(self) -> None:
        stream = self.process.stdout
        assert stream is not None
        while chunk := stream.read1(65536):  # type: ignore[attr-defined]
            self.output += chunk

    async def started(self) -> set[int]:
        """Every process listening; then the whole tree under the run."""
        async def up() -> bool:
            return all(listens(port) for port in self.ports.values())

        await wait_for(up, timeout=90, interval=0.2)
        self.tree = descendants(self.process.pid)
        return self.tree

    def kill(self) -> None:
        """After a failure: nothing of the run outlives the test."""
        for pid in [self.process.pid, *self.tree]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def ended(self) -> int:
        async def done() -> bool:
            return self.process.poll() is not None

        await wait_for(done, timeout=60, interval=0.1)
        code = self.process.returncode
        assert code is not None
        return code


async def stopped_cleanly(run: Run, tree: set[int]) -> None:
    assert await run.ended() == 0, run.output[-3000:].decode(errors="replace")

    async def gone() -> bool:
        return not any(alive(pid) for pid in tree)

    await wait_for(gone, timeout=30, interval=0.1)
    assert not any(listens(port) for port in run.ports.values())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM])
async def test_a_signal_to_the_group_stops_every_process_and_exits_0(
        settings: Settings, signum: signal.Signals) -> None:
    run = Run(settings)
    reader = threading.Thread(target=run.read_all, daemon=True)
    reader.start()
    try:
        tree = await run.started()
        # honcho, its helpers, web, worker, mail, receiver, sandbox.
        assert len(tree) >= 6, tree
        os.killpg(run.process.pid, signum)  # what a terminal does on Ctrl-C or hang-up
        await stopped_cleanly(run, tree)
    finally:
        run.kill()
    await asyncio.to_thread(reader.join, 10)
    assert b"listening on 127.0.0.1" in run.output


async def test_the_pipe_closing_stops_every_process_and_exits_0(settings: Settings) -> None:
    run = Run(settings)
    try:
        tree = await run.started()
        assert run.process.stdout is not None
        run.process.stdout.close()  # `make run | tee log`, and tee is gone
        await stopped_cleanly(run, tree)
    finally:
        run.kill()


async def test_make_run_listens_on_loopback_only(settings: Settings) -> None:
    run = Run(settings)
    reader = threading.Thread(target=run.read_all, daemon=True)
    reader.start()
    try:
        await run.started()
        listening = Path("/proc/net/tcp").read_text() + Path("/proc/net/tcp6").read_text()
        for port in run.ports.values():
            local = [line.split()[1] for line in listening.splitlines()[1:]
                     if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A"]
            assert local, port
            # 0100007F is 127.0.0.1; every interface would be 00000000.
            assert all(address.startswith("0100007F:") for address in local), (port, local)
    finally:
        os.killpg(run.process.pid, signal.SIGINT)
        await run.ended()
        run.kill()


def dead_port() -> int:
    return free_port()  # closed again at once: nothing listens there


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
async def test_make_run_stops_the_private_servers_it_started_too(
        settings: Settings, signum: signal.Signals) -> None:
    # `make run` is devservices around devrun; with DATABASE_URL and REDIS_URL dead, it
    # starts a private PostgreSQL and Redis (under .run/ of a directory of its own).
    work = Path(tempfile.mkdtemp(prefix="settle-devrun-", dir="/tmp"))
    work.chmod(0o755)  # a root user's private PostgreSQL runs as postgres
    shutil.copy(ROOT / "Procfile.dev", work / "Procfile.dev")
    run = Run(settings, command=(sys.executable, "-m", "devtools.devservices", "--"), cwd=work,
              DATABASE_URL=f"postgresql://postgres@127.0.0.1:{dead_port()}/settle_dev",
              REDIS_URL=f"redis://127.0.0.1:{dead_port()}/0")
    reader = threading.Thread(target=run.read_all, daemon=True)
    reader.start()
    try:
        tree = await run.started()
        output = run.output.decode(errors="replace")
        private = [int(port) for port in re.findall(
            r"started a private (?:PostgreSQL|Redis) at 127\.0\.0\.1:(\d+)", output)]
        assert len(private) == 2, output[-3000:]
        os.killpg(run.process.pid, signum)
        await stopped_cleanly(run, tree)
        assert not any(listens(port) for port in private)
    finally:
        run.kill()
        shutil.rmtree(work, ignore_errors=True)
