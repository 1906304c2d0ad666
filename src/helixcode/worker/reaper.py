"""The reaper: one leader across all processes runs the engine's periodic maintenance.

It marks silent workers lost and requeues their tasks (the next attempt resumes from the latest
checkpoint with a new lease token), requeues expired leases, moves due retries to ready, ages waiting
tasks, and pauses or resumes low-criticality tasks as healthy capacity crosses the configured floor.
Every tick it also rolls what the logs gained into the fleet's metrics (``store.metrics``), so the
counters trail the logs by one tick. Every ``retention.interval`` it prunes finished work by policy, a
few batches at a time (``store.retention``). With ``[notify.*]`` targets configured, the leader also
delivers the notifications outbox (``worker.notify``): a pass starts each tick unless the last is still
sending, so a slow receiver never holds up maintenance or the renewal of the leader's lease. Every
worker process runs one (``Reaper.shared``: the workers of a process share it, as they share LISTEN and
the heartbeat); only the leader works, the others stand by to take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import ClassVar

from helixcode.domain.models import Maintenance
from helixcode.errors import StoreError
from helixcode.store.leader import LeaderLock
from helixcode.store.store import Store
from helixcode.worker.notify import Notifier

__all__ = ["Reaper"]

log = logging.getLogger(__name__)

#: A pruning pass's share of a reaper tick: it starts no delete statement (each at most
#: ``retention.batch`` rows in a short transaction) after this fraction of the tick's interval. A fixed
#: count of statements (10 per tick) could not keep up with a fleet finishing 2,000 tasks a second
#: (five rows each): the 1,000,000-task soak ended with 630,000 task rows kept.
PRUNE_SHARE_OF_TICK = 0.5
#: The longest a stopping worker spends delivering notifications that are due.
FLUSH_SECONDS = 5.0
#: Rollup transactions per log per tick, each of at most ``store.metrics.ROLLUP_BATCH`` rows: a backlog
#: (the whole retained log, after an upgrade) drains over several ticks.
ROLLUP_BATCHES_PER_TICK = 10


class Reaper:
    """One process's stand for leadership, and the leader's work. ``shared(store)`` gives the process's
    reaper; workers ``join`` it with their ``stop`` and ``leave`` when they stop."""

    _shared: ClassVar[dict[tuple[int, int], Reaper]] = {}

    def __init__(self, store: Store, owner: str, interval: float | None = None) -> None:
        self.store = store
        self.owner = owner
        cfg = store.settings
        self.interval = interval or max(0.05, min(cfg.workers.poll_interval, cfg.tasks.lease_ttl / 4))
        self.lock = LeaderLock(store.engine, "reaper", owner, ttl=max(3 * self.interval, 1.0))
        self.leading = False
        self.last: Maintenance | None = None
        self._next_prune = 0.0  # monotonic time of the next pruning pass
        self._behind = False  # the last pruning pass stopped with work left
        self.notifier = Notifier(store) if any(t.enabled for t in cfg.notify.values()) else None
        self._sending: asyncio.Task[object] | None = None
        self._members: list[Callable[[], None]] = []  # the ``stop`` of each worker that joined
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def shared(cls, store: Store) -> Reaper:
        """The process's reaper for ``store`` (per event loop). A process that runs many workers (a big
        host, the fleet bench's 250) checks the leader's lease once per ``standby_interval``, not once
        per worker; its owner names the process (``host-pid-random``), which outlives any one worker."""
        key = (id(store), id(asyncio.get_running_loop()))
        reaper = cls._shared.get(key)
        if reaper is None:
            owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            reaper = cls._shared[key] = cls(store, owner)
        return reaper

    def join(self, stop: Callable[[], None]) -> None:
        """A worker stands for leadership through this reaper: the first to join starts it."""
        self._members.append(stop)
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="reaper")
            self._task.add_done_callback(self._died)

    async def leave(self, stop: Callable[[], None]) -> None:
        """The last worker to leave stops the reaper (giving up leadership at once) and delivers the
        notifications that are due, so a process that ran a job's last task sends its outcome before
        it goes."""
        self._members.remove(stop)
        if self._members or self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        for key, reaper in list(self._shared.items()):
            if reaper is self:
                del self._shared[key]
        await self.flush_notifications()

    def _died(self, task: asyncio.Task[None]) -> None:
        """The reaper must never end while its workers run: if it crashes, say why and stop them."""
        if task.cancelled() or task is not self._task:
            return
        log.error("reaper loop crashed: %r", task.exception(), extra={"action": "worker.helper_crash"})
        for stop in list(self._members):
            stop()

    @property
    def standby_interval(self) -> float:
        """How often a worker that does not lead checks the leader's lease: a fleet of standbys must
        not cost the database a query each per second. A dead leader's lease lapses after ``3 x
        interval``; a standby takes over within this much more, well inside a task lease (maintenance
        requeues expired task leases, which live ``tasks.lease_ttl``)."""
        return max(self.interval, min(self.store.settings.tasks.lease_ttl / 4, 10.0))

    async def run(self) -> None:
        try:
            while True:
                await self.tick()
                await asyncio.sleep(self._pause())
        finally:
            await self._stop_sending()
            if self.notifier is not None:
                await self.notifier.aclose()
            with contextlib.suppress(Exception):
                await self.lock.release()

    def _pause(self) -> float:
        """Until the next tick: a standby's interval; the leader's, or none while pruning is behind (a
        pass is capped at a share of a tick, and a fleet finishing thousands of tasks a second makes
        more to prune than passes spaced a tick apart delete: the tables would grow without bound)."""
        if not self.leading:
            return self.standby_interval
        return 0.0 if self._behind else self.interval

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
            self._behind = False  # a database in trouble is not asked again at once
            return None
        await self._rollup()
        if time.monotonic() >= self._next_prune:
            await self._prune()
        self._send_notifications()
        return self.last

    def _send_notifications(self) -> None:
        """Deliver what is due, in the background, unless the last tick's delivery is still going."""
        if self.notifier is None or (self._sending is not None and not self._sending.done()):
            return
        self._sending = asyncio.create_task(self.notifier.flush(), name="notify")

    async def notifications_sent(self) -> None:
        """Wait for the delivery pass in progress, if any (tests; a clean stop)."""
        if self._sending is not None:
            await asyncio.gather(self._sending, return_exceptions=True)

    async def flush_notifications(self) -> None:
        """Before the process ends, deliver what is due, for at most ``FLUSH_SECONDS``: a worker that ran
        a job's last task sends its outcome before it goes. Whatever is left waits in the outbox."""
        if self.notifier is None:
            return
        await self._stop_sending()
        with contextlib.suppress(StoreError, TimeoutError):
            async with asyncio.timeout(FLUSH_SECONDS):
                await self.notifier.flush()
        await self.notifier.aclose()

    async def _stop_sending(self) -> None:
        """Cancel a pass in flight: the rows it holds are retried when their lease runs out."""
        if self._sending is not None:
            self._sending.cancel()
            await asyncio.gather(self._sending, return_exceptions=True)
            self._sending = None

    async def _rollup(self) -> None:
        try:
            await self.store.rollup_metrics(max_batches=ROLLUP_BATCHES_PER_TICK)
        except StoreError as exc:
            log.warning("metrics rollup failed: %s", exc, extra={"action": "reaper.rollup_error"})

    async def _prune(self) -> None:
        """A capped pass; when it stopped with work left, the next comes after one tick, not a whole
        interval, so a backlog drains in small steps without starving maintenance."""
        try:
            pruned = await self.store.prune(max_batches=None, seconds=PRUNE_SHARE_OF_TICK * self.interval)
        except StoreError as exc:
            log.warning("pruning failed: %s", exc, extra={"action": "reaper.prune_error"})
            pruned = None
        if pruned is not None and pruned.total:
            log.info("pruned %s", pruned.to_dict(), extra={"action": "reaper.pruned"})
        more = pruned is not None and pruned.more
        self._behind = more
        self._next_prune = time.monotonic() + (0 if more else self.store.settings.retention.interval)
