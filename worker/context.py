"""The typed seams between processes and code: app keys and the worker context."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypedDict

import asyncpg
import stripe
from aiohttp import web
from arq import ArqRedis

from ledger.checkout import CreateSession
from ledger.inbox import Handlers
from ledger.tx import AfterCommit
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.intake import Intake

SETTINGS = web.AppKey("settings", Settings)
POOL = web.AppKey("pool", asyncpg.Pool)
QUEUE = web.AppKey("queue", ArqRedis)
# Queues the outbox rows a request's transaction owed, once it has committed.
AFTER_COMMIT: web.AppKey[AfterCommit] = web.AppKey("after_commit")
CREATE_SESSION: web.AppKey[CreateSession] = web.AppKey("create_session")
# Records webhook events in batches (see worker.intake).
INTAKE: web.AppKey["Intake"] = web.AppKey("intake")


class WorkerContext(TypedDict, total=False):
    """What arq's `ctx` holds for our jobs (arq adds `redis`, `job_id`, `job_try`...)."""

    settings: Settings
    pool: asyncpg.Pool
    redis: ArqRedis
    handlers: Handlers
    stripe: stripe.StripeClient | None
    stripe_http: stripe.AIOHTTPClient
    job_id: str
    job_try: int
