"""The baseline worker for the settlement benchmark: arq running a job that does nothing,
with the same arq settings as settle's worker (concurrency, polling, JSON).

    python -m bench.noop REDIS_URL QUEUE_NAME
"""

from __future__ import annotations

import sys
from typing import Any

from arq.worker import create_worker

from core.queue import deserialize, redis_settings, serialize
from worker.runner import WorkerSettings


async def noop(ctx: dict[str, Any], ident: int) -> None:
    return None


def main() -> None:
    create_worker(
        {"functions": [noop], "job_serializer": serialize, "job_deserializer": deserialize,
         "keep_result": 0, "max_jobs": WorkerSettings.max_jobs,
         "poll_delay": WorkerSettings.poll_delay},
        redis_settings=redis_settings(sys.argv[1]), queue_name=sys.argv[2],
    ).run()


if __name__ == "__main__":
    main()
