"""The queue (arq on Redis), shared by web and worker: the client, the job format,
and putting rows' work on it.

PostgreSQL is the record; the queue only moves work. Every job is named after
the row it works on (an event, an outbox entry, an ops job), so the webhook,
the sweeper and a replay never queue the same row twice at the same time.
arq's job keys are global to a Redis database, so the queue name is part of
every job id: deployments sharing one Redis (QUEUE_NAME) never see each
other's `event:1`. A failed enqueue loses nothing: the row is still pending
in PostgreSQL and the sweeper queues it again.

With Redis Sentinel, the sentinels say where the master is (asked again after
a failover); the Redis URL then gives only the database, the login and TLS.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
from collections.abc import Sequence
from typing import Any, Literal

from arq import ArqRedis
from arq.connections import RedisSettings
from arq.constants import expires_extra_ms, job_key_prefix
from arq.jobs import serialize_job
from arq.utils import timestamp_ms
from redis.asyncio import ConnectionPool
from redis.asyncio.sentinel import Sentinel

log = logging.getLogger("settle.queue")

Kind = Literal["event", "outbox", "ops"]
FUNCTIONS: dict[Kind, str] = {
    "event": "process_event", "outbox": "deliver_outbox", "ops": "run_ops_job"}
# Events recorded together (the intake writes concurrent deliveries in one batch) are
# applied by one job, up to this many: arq's own round trips per job (claiming it,
# finishing it) then count once for them all. Each event still has its own transaction.
EVENTS_PER_JOB = 20


def serialize(value: Any) -> bytes:
    # JSON, not arq's default pickle: a job carries ids and small results only.
    return json.dumps(value, default=str).encode()


def deserialize(data: bytes) -> Any:
    return json.loads(data)


Sentinels = Sequence[tuple[str, int]]


def redis_settings(url: str, *, sentinels: Sentinels = (),
                   sentinel_master: str | None = None) -> RedisSettings:
    """arq's connection settings (the worker's)."""
    settings = RedisSettings.from_dsn(url)
    if not sentinels:
        return settings
    return dataclasses.replace(settings, host=list(sentinels), sentinel=True,
                               sentinel_master=sentinel_master or "")


def queue_client(url: str, queue_name: str, *, sentinels: Sentinels = (),
                 sentinel_master: str | None = None) -> ArqRedis:
    """A client that does not connect until used, so `web` starts with Redis down."""
    timeouts = {"socket_connect_timeout": 1, "socket_timeout": 2}
    if not sentinels:
        pool = ConnectionPool.from_url(url, **timeouts)
        return ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize,
                        default_queue_name=queue_name)
    conf = RedisSettings.from_dsn(url)
    # The sentinels are asked with the same timeouts (redis-py passes them the
    # socket_* options); the master is connected to with the URL's login.
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(sentinels), db=conf.database, username=conf.username, password=conf.password,
        ssl=conf.ssl, **timeouts)
    client: ArqRedis = sentinel.master_for(sentinel_master or "", redis_class=ArqRedis)
    client.job_serializer, client.job_deserializer = serialize, deserialize
    client.default_queue_name = queue_name
    return client


def job_id(queue_name: str, kind: str, ident: int | str) -> str:
    return f"{queue_name}:{kind}:{ident}"


Job = tuple[str, str, tuple[Any, ...]]  # (job id, function, arguments)


async def _put(queue: ArqRedis, jobs: Sequence[Job], *, defer: float = 0.0,
               timeout: float = 2.0) -> int:
    """Queue jobs in one round trip; how many were newly queued (0, logged, when Redis is
    away).

    The same job arq's `enqueue_job` would write, without its WATCH/EXISTS
    round trips per job: `SET ... NX` on the job key and `ZADD ... NX` on the
    queue, so a job already queued under the same id is left alone.
    """
    if not jobs:
        return 0
    now = timestamp_ms()
    due = now + int(defer * 1000)
    pipe = queue.pipeline(transaction=False)
    for jid, function, args in jobs:
        job = serialize_job(function, args, {}, None, now, serializer=queue.job_serializer)
        pipe.set(job_key_prefix + jid, job, px=due - now + expires_extra_ms, nx=True)
        pipe.zadd(queue.default_queue_name, {jid: due}, nx=True)
    try:
        answers = await asyncio.wait_for(pipe.execute(), timeout)
    except Exception as exc:
        log.warning("enqueue failed; the sweeper will retry",
                    extra={"jobs": jobs[0][1], "count": len(jobs),
                           "error": exc.__class__.__name__})
        return 0
    return sum(1 for created in answers[::2] if created)  # each job's SET NX answer


async def enqueue_many(queue: ArqRedis, kind: Kind, idents: Sequence[int | str], *,
                       defer: float = 0.0, timeout: float = 2.0) -> int:
    """A job for each row (after `defer` seconds), in one round trip; how many were newly
    queued."""
    return await _put(queue, [(job_id(queue.default_queue_name, kind, ident), FUNCTIONS[kind],
                               (ident,)) for ident in idents], defer=defer, timeout=timeout)


async def enqueue_again(queue: ArqRedis, kind: Kind, ident: int | str, *,
                        defer: float) -> bool:
    """The row's job once more, after `defer` seconds, from inside its own running job:
    under a name of its own, since the row's name is still the running job's until it
    returns. True when queued; should it be lost (Redis away), the sweeper queues the row."""
    name = job_id(queue.default_queue_name, kind, f"{ident}:again:{secrets.token_hex(4)}")
    return await _put(queue, [(name, FUNCTIONS[kind], (ident,))], defer=defer) == 1


async def enqueue_events(queue: ArqRedis, pks: Sequence[int], *, timeout: float = 2.0) -> int:
    """Newly recorded events, EVENTS_PER_JOB to a job, in one round trip; how many jobs.
    An event alone is queued as the sweeper would queue it (`event:<pk>`).

    Each pk is queued this way once, by the intake that recorded it, so a batch's id
    (its first pk and size) is unique; the sweeper and a replay queue one event alone
    under its own `event:` id, and applying an event twice changes nothing."""
    chunks = [list(pks[i:i + EVENTS_PER_JOB]) for i in range(0, len(pks), EVENTS_PER_JOB)]
    name = queue.default_queue_name
    return await _put(queue, [
        (job_id(name, "event", chunk[0]), FUNCTIONS["event"], (chunk[0],)) if len(chunk) == 1
        else (job_id(name, "events", f"{chunk[0]}+{len(chunk)}"), "process_events", (chunk,))
        for chunk in chunks], timeout=timeout)


async def enqueue(queue: ArqRedis, kind: Kind, ident: int | str) -> bool:
    """True when newly queued; False when already queued, or (logged) Redis is away."""
    return await enqueue_many(queue, kind, [ident]) == 1
