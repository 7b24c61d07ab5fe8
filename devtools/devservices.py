"""Run a command against PostgreSQL and Redis, starting private ones when needed.

`make run` and `make test` go through here. When `DATABASE_URL` and
`REDIS_URL` (or their defaults) answer, they are used as they are. When one
does not, a private server is started under `.run/` on a free port, the
command runs with the variable pointing at it, and the server is stopped when
the command ends (Ctrl-C included).

Run as root, PostgreSQL runs as the `postgres` user; when that user cannot
reach `.run/` (a clone under /root, or in a `mktemp -d` directory), the
private cluster lives in a directory of its own under the system's temporary
directory instead, removed when the command ends. A missing server is
installed with apt-get when running as root on Debian or Ubuntu; otherwise
one line names the package to install.

    python -m devtools.devservices -- CMD [ARGS...]

This module only uses the standard library plus asyncpg and redis to probe,
so it runs from the project's virtual environment before anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis

from core.db import create_database
from core.settings import DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL

RUN_DIR = Path(".run")
# Where Debian puts redis-server, for a PATH that lacks it.
REDIS_ELSEWHERE = ("/usr/bin/redis-server",)


class Missing(Exception):
    """A piece of the machine is missing; the message says what to install."""


def say(message: str) -> None:
    print(f"settle: {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def with_host_port(url: str, port: int, database: str | None = None) -> str:
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    path = f"/{database}" if database is not None else parts.path
    return urlunsplit((parts.scheme, netloc, path, parts.query, parts.fragment))


# --- PostgreSQL --------------------------------------------------------------


async def postgres_answers(dsn: str) -> bool:
    """True when the server answers; creates the database if only it is missing."""
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except asyncpg.InvalidCatalogNameError:
        await create_database(dsn)
        return True
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False
    await conn.close()
    return True


def apt_install(package: str) -> bool:
    """Install a Debian package when running as root where apt-get exists; whether it ran."""
    apt = shutil.which("apt-get")
    if os.geteuid() != 0 or not apt:
        return False
    say(f"installing {package} with apt-get (running as root)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for args in (["update", "-qq"], ["install", "-y", "-qq", "--no-install-recommends", package]):
        done = subprocess.run([apt, *args], env=env, capture_output=True, text=True)
        if done.returncode:
            say(f"apt-get {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1:]}")
            return False
    return True


def find_binary(lookup: Callable[[], str | None], package: str, missing: str) -> str:
    """A server binary, installed first where we may; else Missing naming the package."""
    found = lookup()
    if not found and apt_install(package):
        found = lookup()
    if not found:
        raise Missing(f"{missing}; install it with: sudo apt-get install {package}")
    return found


def _postgres_lookup(name: str) -> Callable[[], str | None]:
    def lookup() -> str | None:
        candidates = sorted(
            glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
            key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
            reverse=True,
        )
        return candidates[0] if candidates else shutil.which(name)

    return lookup


def postgres_bin(name: str) -> str:
    return find_binary(_postgres_lookup(name), "postgresql",
                       "DATABASE_URL does not answer and no PostgreSQL server is installed")


class PrivatePostgres:
    """A throwaway PostgreSQL cluster under .run/postgres, trust auth, loopback only."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.port = free_port()
        self.user: str | None = None
        # Set when the cluster lives in a temporary directory: removed by stop().
        self.scratch: Path | None = None
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root; Debian's package creates this user.
            if not _has_user("postgres"):
                apt_install("postgresql")
            if not _has_user("postgres"):
                raise Missing(
                    "running as root and there is no 'postgres' user to run a private "
                    "PostgreSQL; install it with: sudo apt-get install postgresql"
                )
            self.user = "postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _reachable(self) -> bool:
        """Can the server's user enter and write its directory (not so under /root)?"""
        if self.user is None:
            return True
        done = subprocess.run(["test", "-w", str(self.root), "-a", "-x", str(self.root)],
                              user=self.user, capture_output=True)
        return done.returncode == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), user=self.user, capture_output=True, text=True, cwd=self.root,
            start_new_session=True,
        )

    def start(self) -> None:
        initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(self.root, self.user)
            if not self._reachable():
                self.scratch = Path(tempfile.mkdtemp(prefix="settle-postgres-"))
                shutil.chown(self.scratch, self.user)
                self.root = self.scratch
        if not (self.data / "PG_VERSION").exists():
            shutil.rmtree(self.data, ignore_errors=True)
            done = self._run(initdb, "-D", str(self.data), "-U", "postgres",
                             "--auth=trust", "-E", "UTF8", "--no-sync")
            if done.returncode:
                raise Missing(f"initdb failed: {done.stderr.strip().splitlines()[-1:]}")
        # A server left running by a previous run that was killed: stop it first.
        if self._run(pg_ctl, "-D", str(self.data), "status").returncode == 0:
            self._run(pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        sockets = str(self.root) if len(str(self.root)) < 90 else ""
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='{sockets}'"
        done = self._run(pg_ctl, "-D", str(self.data), "-l", str(self.root / "server.log"),
                         "-o", options, "-w", "-t", "60", "start")
        if done.returncode:
            raise Missing(f"PostgreSQL did not start; see {self.root / 'server.log'}")

    def stop(self) -> None:
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# --- Redis ------------------------------------------------------------------


async def redis_answers(url: str) -> bool:
    client = aioredis.from_url(  # type: ignore[no-untyped-call]
        url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(await client.ping())
    except (OSError, aioredis.RedisError):
        return False
    finally:
        await client.aclose()


class PrivateRedis:
    """A Redis that keeps nothing on disk, under .run/redis, loopback only."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = find_binary(
            lambda: shutil.which("redis-server")
            or next((p for p in REDIS_ELSEWHERE if os.path.exists(p)), None),
            "redis-server", "REDIS_URL does not answer and redis-server is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.root),
             "--logfile", str(self.root / "server.log")],
            start_new_session=True,
        )
        url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 15
        while not asyncio.run(redis_answers(url)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise Missing(f"redis-server did not start; see {self.root / 'server.log'}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()


# --- the wrapper ------------------------------------------------------------


@contextlib.contextmanager
def services(env: dict[str, str]) -> Iterator[dict[str, str]]:
    """Yield an environment whose DATABASE_URL and REDIS_URL answer."""
    env = dict(env)
    started: list[PrivatePostgres | PrivateRedis] = []
    try:
        database_url = env.get("DATABASE_URL") or DEFAULT_DATABASE_URL
        if asyncio.run(postgres_answers(database_url)):
            env["DATABASE_URL"] = database_url
        else:
            pg = PrivatePostgres(RUN_DIR / "postgres")
            pg.start()
            started.append(pg)
            name = urlsplit(database_url).path.lstrip("/") or "settle"
            env["DATABASE_URL"] = f"postgresql://postgres@127.0.0.1:{pg.port}/{name}"
            asyncio.run(postgres_answers(env["DATABASE_URL"]))
            say(f"DATABASE_URL did not answer: started a private PostgreSQL at "
                f"127.0.0.1:{pg.port} (data in {pg.data})")

        redis_url = env.get("REDIS_URL") or DEFAULT_REDIS_URL
        if asyncio.run(redis_answers(redis_url)):
            env["REDIS_URL"] = redis_url
        else:
            rd = PrivateRedis(RUN_DIR / "redis")
            rd.start()
            started.append(rd)
            env["REDIS_URL"] = with_host_port(redis_url, rd.port)
            say(f"REDIS_URL did not answer: started a private Redis at 127.0.0.1:{rd.port}")
        yield env
    finally:
        for server in reversed(started):
            server.stop()


def run(command: list[str]) -> int:
    env = dict(os.environ)
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    try:
        with services(env) as ready:
            child = subprocess.Popen(command, env=ready)
            # Ctrl-C reaches the whole foreground group, the child included: wait for
            # it to stop rather than dying first and leaving servers behind.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            # SIGTERM, or the terminal closing (SIGHUP): the child is told to stop and
            # waited for, so the servers above are stopped after it, never left running.
            for signum in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, lambda *_: child.terminate())
            try:
                return child.wait()
            finally:
                signal.signal(signal.SIGINT, previous)
    except Missing as missing:
        say(str(missing))
        return 3


def main() -> None:
    args = sys.argv[1:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        say("usage: python -m devtools.devservices -- COMMAND [ARGS...]")
        sys.exit(2)
    sys.exit(run(args))


if __name__ == "__main__":
    main()
