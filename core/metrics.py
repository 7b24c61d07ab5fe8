"""Prometheus metrics (CONTRACT §8).

Webhook outcomes are counted in the web process that saw them (each `web`
is scraped on its own). What workers do is counted in one Redis hash per
queue, so any `web` can report it for all workers on any machine; queue depth
comes from Redis and the pending backlog from PostgreSQL at scrape time.
"""

from __future__ import annotations

import logging
from collections import Counter as Tally
from collections.abc import Iterable

import asyncpg
from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

log = logging.getLogger("settle.metrics")

REGISTRY = CollectorRegistry()
WEBHOOKS = Counter(
    "settle_webhooks_received", "Webhook deliveries by outcome", ["outcome"], registry=REGISTRY
)
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def shared_key(queue_name: str) -> str:
    return f"{queue_name}:metrics"


def _label(value: str) -> str:
    return value.replace("|", "_")


async def record_events_processed(redis: Redis, queue_name: str,
                                  events: Iterable[tuple[str, str, float]]) -> None:
    """Count events applied, as (type, outcome, seconds), in one round trip."""
    key = shared_key(queue_name)
    counts: Tally[str] = Tally()
    total = 0.0
    for event_type, outcome, seconds in events:
        # Only the one bucket the duration falls in: render() sums them into
        # Prometheus's cumulative buckets.
        bound = next((str(b) for b in BUCKETS if seconds <= b), "+Inf")
        counts[f"events|{_label(event_type)}|{outcome}"] += 1
        counts[f"bucket|{bound}"] += 1
        total += seconds
    if not counts:
        return
    pipe = redis.pipeline(transaction=False)
    for field, count in counts.items():
        pipe.hincrby(key, field, count)
    pipe.hincrbyfloat(key, "duration_sum", total)
    await _best_effort(pipe)


async def record_email(redis: Redis, queue_name: str, kind: str, outcome: str) -> None:
    pipe = redis.pipeline(transaction=False)
    pipe.hincrby(shared_key(queue_name), f"emails|{_label(kind)}|{outcome}", 1)
    await _best_effort(pipe)


async def _best_effort(pipe: Pipeline) -> None:
    try:
        await pipe.execute()
    except Exception as exc:  # a metric is never worth failing a job for
        log.debug("metrics write failed", extra={"error": exc.__class__.__name__})


class _Families:
    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self.families


async def render(redis: Redis, pool: asyncpg.Pool, queue_name: str) -> bytes:
    """The exposition text: this process's counters, then the shared ones."""
    families: list[Metric] = []
    try:
        raw: dict[bytes, bytes] = await redis.hgetall(shared_key(queue_name))  # type: ignore[misc]
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        depth = await redis.zcard(queue_name)
    except Exception:
        fields, depth = {}, None
    events = CounterMetricFamily("settle_events_processed", "Events processed by type and outcome",
                                 labels=["type", "outcome"])
    emails = CounterMetricFamily("settle_emails", "Emails by kind and outcome",
                                 labels=["kind", "outcome"])
    for field, value in sorted(fields.items()):
        name, _, rest = field.partition("|")
        if name == "events":
            events.add_metric(rest.split("|", 1), float(value))
        elif name == "emails":
            emails.add_metric(rest.split("|", 1), float(value))
    families += [events, emails]
    buckets, running = [], 0.0
    for bound in [*map(str, BUCKETS), "+Inf"]:
        running += float(fields.get(f"bucket|{bound}", 0))
        buckets.append((bound, running))
    families.append(HistogramMetricFamily(
        "settle_event_processing_seconds", "Time to apply one event",
        buckets=buckets, sum_value=float(fields.get("duration_sum", 0)),
    ))
    if depth is not None:
        families.append(GaugeMetricFamily("settle_queue_depth", "Jobs waiting in the queue",
                                          value=depth))
    try:
        row = await pool.fetchrow(
            """select count(*) as n,
                      coalesce(extract(epoch from now() - min(received_at)), 0) as age
               from events where status = 'pending'"""
        )
        families.append(GaugeMetricFamily("settle_events_pending", "Events not yet applied",
                                          value=row["n"]))
        families.append(GaugeMetricFamily(
            "settle_oldest_pending_event_age_seconds", "Age of the oldest pending event",
            value=float(row["age"])))
    except Exception:
        log.warning("metrics: database unavailable")
    shared = CollectorRegistry()
    shared.register(_Families(families))
    return generate_latest(REGISTRY) + generate_latest(shared)
