"""`settle`: the processes of the Procfile and the operators' commands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

from core import logs
from core.settings import Settings, SettingsError


def load_settings() -> Settings:
    """Every process's settings: settle's own and each registered processor's."""
    from worker.services import with_processors

    try:
        return with_processors(Settings.from_env(os.environ), os.environ)
    except SettingsError as bad:
        print(f"settle: {bad}", file=sys.stderr)
        sys.exit(2)


def cmd_web(settings: Settings) -> None:
    if settings.web_processes == 1:
        serve_web(settings, reuse_port=False)
        return
    run_several(settings.web_processes, lambda: serve_web(settings, reuse_port=True))


# `settle web` as several processes on one port (WEB_PROCESSES), for machines with more
# cores than one Python process can use. Each child listens on the same port with
# SO_REUSEPORT and the kernel spreads new connections over them; each has its own pool
# and intake, so every guarantee of one `web` holds for each. The parent only forks and
# supervises: SIGTERM or SIGINT goes to every child, and when one child ends on its own
# the others are stopped too, so the platform sees the process end and restarts it whole.

def run_several(count: int, serve: Callable[[], None]) -> None:
    children: list[int] = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:  # the child: no loop, thread or connection exists yet to inherit
            code = 0
            try:
                serve()
            except BaseException:  # logged by the service; the parent sees the code
                code = 1
            finally:
                os._exit(code)
        children.append(pid)

    stopping = False

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for child in children:
            try:
                os.kill(child, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failed = False
    while children:
        pid, status = os.wait()
        if pid not in children:
            continue
        children.remove(pid)
        code = os.waitstatus_to_exitcode(status)
        # A child still starting when told to stop ends by the signal itself: asked for.
        if not (code == 0 or stopping and code == -signal.SIGTERM):
            failed = True
        if not stopping:
            # One ended on its own: a failure, whatever its code; take the rest down with it.
            failed = True
            stop(signal.SIGTERM, None)
    sys.exit(1 if failed else 0)


def serve_web(settings: Settings, *, reuse_port: bool) -> None:
    from aiohttp import web

    from worker.app import create_app

    web.run_app(create_app(settings), host=settings.host, port=settings.port, access_log=None,
                print=None, reuse_port=reuse_port or None)


def cmd_worker(settings: Settings) -> None:
    from worker.runner import run_worker

    try:
        run_worker(settings)
    except SettingsError as bad:
        print(f"settle: {bad}", file=sys.stderr)
        sys.exit(2)


def cmd_migrate(settings: Settings) -> None:
    from worker.migrate import migrate

    applied = asyncio.run(migrate(
        settings.database_url, statement_cache_size=settings.database_statement_cache_size))
    print(f"settle: {len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))


COMMANDS = {"web": cmd_web, "worker": cmd_worker, "migrate": cmd_migrate}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="settle", description=__doc__,
        epilog="exit codes: 0 done, 1 failed, 2 bad usage or settings, 4 not found")
    sub = top.add_subparsers(dest="command", required=True)
    sub.add_parser("web", help="serve HTTP on $HOST:$PORT (every interface by default)")
    sub.add_parser("worker", help="run the arq worker (jobs and cron)")
    sub.add_parser("migrate", help="apply database migrations (the release step)")
    rec = sub.add_parser("reconcile", help="recompute invoices, repair drift, recover payments")
    rec.add_argument("--invoice", help="one invoice (default: every open invoice)")
    ev = sub.add_parser("events", help="list webhook events, newest first")
    ev.add_argument("--status", choices=["pending", "processed", "ignored", "failed"])
    ev.add_argument("--limit", type=int, default=50)
    ev.add_argument("--next", help="the cursor printed for the following page")
    rp = sub.add_parser("replay", help="apply a failed event again")
    rp.add_argument("event_id")
    ob = sub.add_parser("outbox", help="list owed side effects (mails, refunds, session "
                        "expiries), newest first")
    ob.add_argument("--status", choices=["pending", "done", "failed"])
    ob.add_argument("--kind", help="one kind, e.g. email, refund, expire_checkout")
    ob.add_argument("--limit", type=int, default=50, help="a page, from 1 to 100")
    ob.add_argument("--next", help="the cursor printed for the following page")
    rt = sub.add_parser("retry", help="try a failed side effect again, under the same key")
    rt.add_argument("outbox_id", type=int)
    inv = sub.add_parser("invoice", help="an invoice and everything that happened to it")
    inv.add_argument("invoice_id")
    eps = sub.add_parser("endpoints", help="list outbound webhook endpoints, newest first")
    eps.add_argument("--limit", type=int, default=50, help="a page, from 1 to 100")
    eps.add_argument("--next", help="the cursor printed for the following page")
    msg = sub.add_parser("messages", help="list an outbound webhook endpoint's messages, "
                         "newest first")
    msg.add_argument("endpoint_id")
    msg.add_argument("--status", choices=["pending", "done", "failed"])
    msg.add_argument("--limit", type=int, default=50, help="a page, from 1 to 100")
    msg.add_argument("--next", help="the cursor printed for the following page")
    for command in (rec, ev, rp, ob, rt, inv, eps, msg):
        command.add_argument("--json", action="store_true", help="machine-readable output")
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    settings = load_settings()
    if args.command in COMMANDS:
        logs.configure()
        COMMANDS[args.command](settings)
        return
    from worker import opscli

    logs.configure(logging.WARNING)  # the command's own output is what a person reads
    sys.exit(opscli.run(args.command, settings, args))
