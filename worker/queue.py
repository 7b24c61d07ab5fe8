"""The arq side shared by web and worker: JSON serialisation and the Redis client."""

from __future__ import annotations

import json
from typing import Any

from arq import ArqRedis
from arq.connections import RedisSettings
from redis.asyncio import ConnectionPool


def serialize(value: Any) -> bytes:
    # JSON, not arq's default pickle: a job carries ids and small results only.
    return json.dumps(value, default=str).encode()


def deserialize(data: bytes) -> Any:
    return json.loads(data)


def redis_settings(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def queue_client(url: str, queue_name: str) -> ArqRedis:
    """A client that does not connect until used, so `web` starts with Redis down."""
    pool = ConnectionPool.from_url(url, socket_connect_timeout=1, socket_timeout=2)
    return ArqRedis(pool, job_serializer=serialize, job_deserializer=deserialize,
                    default_queue_name=queue_name)
