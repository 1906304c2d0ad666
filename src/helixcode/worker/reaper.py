"""The reaper: one leader across all processes runs the engine's periodic maintenance.

It marks silent workers lost and requeues their tasks (the next attempt resumes from the latest
checkpoint with a new lease token), requeues expired leases, moves due retries to ready, ages waiting
tasks, and pauses or resumes low-criticality tasks as healthy capacity crosses the configured floor.
Every tick it also rolls what the logs gained into the fleet's metrics (``store.metrics``), so the
counters trail the logs by one tick. Every ``retention.interval`` it prunes finished work by policy, a
few batches at a time (``store.retention``). Every worker runs one; only the leader works, the others
stand by to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from helixcode.domain.models import Maintenance
from helixcode.errors import StoreError
from helixcode.store.leader import LeaderLock
from helixcode.store.store import Store

__all__ = ["Reaper"]

log = logging.getLogger(__name__)

#: Delete statements per reaper tick: each is at most ``retention.batch`` rows in a short transaction.
PRUNE_BATCHES_PER_TICK = 10
#: Rollup transactions per log per tick, each of at most ``store.metrics.ROLLUP_BATCH`` rows: a backlog
#: (the whole retained log, after an upgrade) drains over several ticks.
ROLLUP_BATCHES_PER_TICK = 10


class Reaper:
    def __init__(self, store: Store, owner: str, interval: float | None = None) -> None:
        self.store = store
        self.owner = owner
        cfg = store.settings
        self.interval = interval or max(0.05, min(cfg.workers.poll_interval, cfg.tasks.lease_ttl / 4))
        self.lock = LeaderLock(store.engine, "reaper", owner, ttl=max(3 * self.interval, 1.0))
        self.leading = False
        self.last: Maintenance | None = None
        self._next_prune = 0.0  # monotonic time of the next pruning pass

    async def run(self) -> None:
        try:
            while True:
                await self.tick()
                await asyncio.sleep(self.interval)
        finally:
            with contextlib.suppress(Exception):
                await self.lock.release()

    async def tick(self) -> Maintenance | None:
        """One cycle: lead if possible, and if leading, maintain."""
        leading = await self.lock.acquire()
        if leading != self.leading:
            log.info("reaper %s", "leading" if leading else "standing by", extra={"action": "reaper.role"})
            self.leading = leading
        if not leading:
            return None
        try:
            self.last = await self.store.maintain()
        except StoreError as exc:
            log.warning("maintenance failed: %s", exc, extra={"action": "reaper.error"})
            return None
        await self._rollup()
        if time.monotonic() >= self._next_prune:
            await self._prune()
        return self.last

    async def _rollup(self) -> None:
        try:
            await self.store.rollup_metrics(max_batches=ROLLUP_BATCHES_PER_TICK)
        except StoreError as exc:
            log.warning("metrics rollup failed: %s", exc, extra={"action": "reaper.rollup_error"})

    async def _prune(self) -> None:
        """A capped pass; when it stopped with work left, the next comes after one tick, not a whole
        interval, so a backlog drains in small steps without starving maintenance."""
        try:
            pruned = await self.store.prune(max_batches=PRUNE_BATCHES_PER_TICK)
        except StoreError as exc:
            log.warning("pruning failed: %s", exc, extra={"action": "reaper.prune_error"})
            pruned = None
        if pruned is not None and pruned.total:
            log.info("pruned %s", pruned.to_dict(), extra={"action": "reaper.pruned"})
        more = pruned is not None and pruned.more
        self._next_prune = time.monotonic() + (0 if more else self.store.settings.retention.interval)
