"""`settle`: the processes of the Procfile and the operators' commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from worker import logs
from worker.settings import Settings, SettingsError


def load_settings() -> Settings:
    try:
        return Settings.from_env(os.environ)
    except SettingsError as bad:
        print(f"settle: {bad}", file=sys.stderr)
        sys.exit(2)


def cmd_web(settings: Settings) -> None:
    from aiohttp import web

    from worker.app import create_app

    web.run_app(create_app(settings), port=settings.port, access_log=None, print=None)


def cmd_worker(settings: Settings) -> None:
    from worker.runner import build_worker

    build_worker(settings).run()


def cmd_migrate(settings: Settings) -> None:
    from worker.migrate import migrate

    applied = asyncio.run(migrate(settings.database_url))
    print(f"settle: {len(applied)} migration(s) applied" + (f": {', '.join(applied)}" if applied else ""))


COMMANDS = {"web": cmd_web, "worker": cmd_worker, "migrate": cmd_migrate}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="settle", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("web", help="serve HTTP on $PORT")
    sub.add_parser("worker", help="run the arq worker (jobs and cron)")
    sub.add_parser("migrate", help="apply database migrations (the release step)")
    args = parser.parse_args(argv)
    settings = load_settings()
    logs.configure()
    COMMANDS[args.command](settings)
