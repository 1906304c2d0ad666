"""A HelixCode worker process: the real runtime (``Worker``) with the options a measure asks for."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

from bench.common import wait_go
from helixcode.config import DatabaseSettings, Settings, TasksSettings, WorkersSettings
from helixcode.store.store import Store
from helixcode.worker.runtime import Worker, WorkerOptions


def settings_for(url: str, lease_ttl: float = 30.0, heartbeat: float = 5.0) -> Settings:
    return Settings(
        # BENCH_POOL_SIZE: compare a worker process's connection budget (default: HelixCode's default).
        database=DatabaseSettings(url=url, pool_size=int(os.environ.get("BENCH_POOL_SIZE", "1"))),
        tasks=TasksSettings(lease_ttl=lease_ttl, heartbeat_interval=heartbeat),
        workers=WorkersSettings(poll_interval=1.0),
    )


async def main(args: argparse.Namespace) -> None:
    settings = settings_for(args.url, args.lease_ttl, args.heartbeat)
    store = await Store.open(settings, upgrade=False)
    options = WorkerOptions(
        concurrency=args.concurrency,
        exit_when_idle=not args.forever,
        detect=False,
        sample_gpu=False,
        batch_acks=args.batch_acks,
    )
    worker = Worker(store, settings, options)
    await store.now()  # connect before the clock starts
    wait_go()
    try:
        stats = await worker.run()
    finally:
        await store.aclose()
    print(
        json.dumps({"end": time.time(), "claimed": stats.claimed, "succeeded": stats.succeeded}), flush=True
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--batch-acks", action="store_true")
    parser.add_argument("--forever", action="store_true")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--heartbeat", type=float, default=5.0)
    asyncio.run(main(parser.parse_args()))
