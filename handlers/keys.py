"""The application's typed keys: what every handler reads from `request.app`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from aiohttp import web

from core.services import Services
from core.tx import Books
from handlers.intake import Intake

SERVICES = web.AppKey("services", Services)
# Each processor's batch writer of its webhook notices, by name (see handlers.intake).
INTAKES = web.AppKey("intakes", Mapping[str, Intake])
# The bodies anyone may send being read at once (handlers.bodies).
BODY_READS = web.AppKey("body_reads", asyncio.Semaphore)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def books(request: web.Request) -> Books:
    return request.app[SERVICES].books
