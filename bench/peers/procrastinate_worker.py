"""A procrastinate worker process (public API: ``App``, ``PsycopgConnector``, ``run_worker_async``).

Tasks: ``noop`` (throughput) and ``link`` (hand-off: each link defers the next one at its end, which is how
procrastinate expresses "run B after A": it has no dependencies between jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time

import procrastinate

from bench.common import wait_go

app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("BENCH_DSN", "")))


@app.task(name="noop")
async def noop() -> None:
    return None


@app.task(name="link")
async def link(chain: int, i: int, n: int) -> None:
    if i + 1 < n:
        await link.defer_async(chain=chain, i=i + 1, n=n)


async def prepare(dsn: str, n: int, chains: int, length: int) -> None:
    """Apply the schema and defer the work (run in the parent, before the workers start)."""
    parent = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=dsn))
    async with parent.open_async():
        await parent.schema_manager.apply_schema_async()
        for start in range(0, n, 1000):
            batch = ({} for _ in range(min(1000, n - start)))
            await parent.configure_task(name="noop", allow_unknown=True).batch_defer_async(*batch)
        for c in range(chains):
            await parent.configure_task(name="link", allow_unknown=True).defer_async(chain=c, i=0, n=length)


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    async with app.open_async():
        wait_go()
        await app.run_worker_async(
            concurrency=args.concurrency, wait=False, install_signal_handlers=False, listen_notify=True
        )
    print(json.dumps({"end": time.time()}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, default=1)
    asyncio.run(main(parser.parse_args()))
