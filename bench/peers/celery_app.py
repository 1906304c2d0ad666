"""The Celery baseline: a no-op task on a Redis broker (``celery -A bench.peers.celery_app worker``).

Each worker process notes when it starts its first task (one Redis SET per process), because a Celery
worker cannot be held at a start line the way the other drivers are.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery
from celery.signals import task_prerun

BROKER = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
QUEUE = "bench"

app = Celery("bench", broker=BROKER)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,  # acknowledge after running, like the database queues
    task_default_queue=QUEUE,
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "1")),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

_first: list[bool] = []


@app.task(name="noop")
def noop() -> None:
    return None


@task_prerun.connect
def _note_start(**_kw: Any) -> None:
    if not _first:
        _first.append(True)
        import redis

        redis.Redis.from_url(BROKER).set(f"bench:start:{os.getpid()}", time.time())
