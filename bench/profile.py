"""Where HelixCode's time goes: one worker's claim+complete loop under pyinstrument (``--only profile``).

Runs the store calls the worker runtime makes, in one process, on a fresh database of no-op tasks, and
prints pyinstrument's call tree (also saved as HTML under ``bench/results/``).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from pyinstrument import Profiler

from bench.common import ROOT, fresh_pg, helix_url
from bench.drains import helix_submit, noop_plan
from bench.peers.helix_worker import settings_for


async def loop(url: str, n: int, batch: int) -> float:
    from helixcode.store.store import Store

    await helix_submit(url, noop_plan(n))
    store = await Store.open(settings_for(url), upgrade=False)
    profiler = Profiler(interval=0.0005, async_mode="enabled")
    started = time.perf_counter()
    profiler.start()
    done = 0
    while claims := await store.claim("profiler", (), batch):
        if batch > 1:
            await store.complete_many([(c.task.id, c.token, {}) for c in claims])
        else:
            for c in claims:
                await store.complete(c.task.id, c.token, {})
        done += len(claims)
    profiler.stop()
    elapsed = time.perf_counter() - started
    await store.aclose()
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"profile-{batch}.html").write_text(profiler.output_html())
    return done / elapsed


def main(db: str = "pg", n: int = 300, batch: int = 1) -> float:
    if db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            return asyncio.run(loop(f"sqlite+aiosqlite:///{Path(tmp) / 'p.db'}", n, batch))
    with fresh_pg("prof") as dsn:
        return asyncio.run(loop(helix_url(dsn), n, batch))


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="pg")
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--batch", type=int, default=1)
    a = parser.parse_args()
    print(f"{main(a.db, a.n, a.batch):.0f} tasks/s in one process")
