"""The reaper: one leader across all processes runs the engine's periodic maintenance.

It marks silent workers lost and requeues their tasks (the next attempt resumes from the latest
checkpoint with a new lease token), requeues expired leases, moves due retries to ready, ages waiting
tasks, and pauses or resumes low-criticality tasks as healthy capacity crosses the configured floor.
Every worker runs one; only the leader works, the others stand by to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from helixcode.domain.models import Maintenance
from helixcode.errors import StoreError
from helixcode.store.leader import LeaderLock
from helixcode.store.store import Store

__all__ = ["Reaper"]

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, store: Store, owner: str, interval: float | None = None) -> None:
        self.store = store
        self.owner = owner
        cfg = store.settings
        self.interval = interval or max(0.05, min(cfg.workers.poll_interval, cfg.tasks.lease_ttl / 4))
        self.lock = LeaderLock(store.engine, "reaper", owner, ttl=max(3 * self.interval, 1.0))
        self.leading = False
        self.last: Maintenance | None = None

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
        return self.last
