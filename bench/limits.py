"""Part of measure 6: what the fleet's shared LLM limiter adds to each model call on PostgreSQL.

Each call of a limited provider takes a slot before it is sent (``Store.acquire``: one transaction that
locks the model's row, prunes and counts the window, inserts the slot) and corrects it afterwards with
the tokens used (``Store.settle``). Measured here: both, back to back, under a quota high enough that
nothing waits, in a fresh database, so the figure is the limiter's own cost per call.
"""

from __future__ import annotations

import asyncio
import time

from bench.common import fresh_pg, helix_url, percentile

__all__ = ["limiter_overhead_ms"]


async def _measure(url: str, calls: int) -> list[float]:
    from helixcode.config import DatabaseSettings, Settings
    from helixcode.llm.limits import Quota
    from helixcode.store.store import Store

    store = await Store.open(Settings(database=DatabaseSettings(url=url)))
    quota = Quota(rpm=10**9, tpm=10**9)
    samples: list[float] = []
    try:
        for i in range(calls + 20):
            started = time.perf_counter()
            admission = await store.acquire("bench", "m", quota, tokens=900)
            assert admission.ticket is not None
            await store.settle(admission.ticket, 850)
            if i >= 20:  # warm-up: connections, prepared statements
                samples.append((time.perf_counter() - started) * 1000)
    finally:
        await store.aclose()
    return samples


def limiter_overhead_ms(calls: int) -> tuple[float, float]:
    """(p50, p99) milliseconds the shared limiter adds per model call on PostgreSQL."""
    with fresh_pg("limits") as dsn:
        samples = asyncio.run(_measure(helix_url(dsn), calls))
    return percentile(samples, 50), percentile(samples, 99)
