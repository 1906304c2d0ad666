"""A pgqueuer worker process (public API: ``PsycopgDriver``, ``Queries``, ``QueueManager``).

Entrypoints: ``noop`` (throughput) and ``sleep`` (recovery: sleeps in steps, appending each start to a
file so the parent sees when a killed job runs again; pgqueuer has no checkpoints, so it restarts from 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from datetime import timedelta

import psycopg
from pgqueuer import PsycopgDriver, QueueManager
from pgqueuer.models import Job
from pgqueuer.queries import Queries
from pgqueuer.types import QueueExecutionMode

from bench.common import wait_go


async def connect(dsn: str) -> PsycopgDriver:
    return PsycopgDriver(await psycopg.AsyncConnection.connect(dsn, autocommit=True))


async def prepare(dsn: str, n: int, entrypoint: str = "noop", payload: bytes | None = None) -> None:
    """Install the schema (durability: pgqueuer's default, ``durable``) and enqueue ``n`` jobs."""
    driver = await connect(dsn)
    queries = Queries(driver)
    await queries.install()
    for start in range(0, n, 1000):
        k = min(1000, n - start)
        await queries.enqueue([entrypoint] * k, [payload] * k, [0] * k)


async def main(args: argparse.Namespace) -> None:
    driver = await connect(args.dsn)
    qm = QueueManager(Queries(driver))
    log = os.environ.get("BENCH_LOG")

    @qm.entrypoint("noop")
    async def noop(job: Job) -> None:
        return None

    @qm.entrypoint("sleep")
    async def sleep(job: Job) -> None:
        seconds = float(job.payload or b"1")
        started = time.time()
        if log:
            line = json.dumps({"pid": os.getpid(), "start": started, "resumed_from": 0.0}) + "\n"
            with open(log, "a") as fh:  # noqa: ASYNC230 - one short line, once per job
                fh.write(line)
        done = 0.0
        while done < seconds:
            await asyncio.sleep(min(0.1, seconds - done))
            done = time.time() - started

    wait_go()
    await qm.run(
        batch_size=args.batch,
        mode=QueueExecutionMode.continuous if args.forever else QueueExecutionMode.drain,
        heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout),
        dequeue_timeout=timedelta(seconds=1),
    )
    print(json.dumps({"end": time.time()}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--forever", action="store_true")
    parser.add_argument("--heartbeat-timeout", type=float, default=30.0)
    asyncio.run(main(parser.parse_args()))
