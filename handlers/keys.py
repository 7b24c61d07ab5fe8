"""The application's typed keys: what every handler reads from `request.app`."""

from __future__ import annotations

from aiohttp import web

from core.services import Services
from core.tx import Books
from handlers.intake import Intake

SERVICES = web.AppKey("services", Services)
# Records webhook events in batches (see handlers.intake).
INTAKE = web.AppKey("intake", Intake)


def services(request: web.Request) -> Services:
    return request.app[SERVICES]


def books(request: web.Request) -> Books:
    return request.app[SERVICES].books
