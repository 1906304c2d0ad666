"""Heartbeats: one loop per process says that its workers live and renews their leases, in one round trip.

A worker process normally runs one worker identity, but a big host (or the fleet bench, which simulates
a thousand) runs many in one process. Each beating on its own costs the database a transaction per
worker and interval, fsync'd, and the process a resource sample and a thread hop each: at a thousand
workers that was 200 transactions a second before any work was done. The ``BeatHub`` is to heartbeats
what the ``WakeHub`` is to LISTEN: workers ``join`` the process's hub, and every ``heartbeat_interval``
it sends the beats that are due (every worker holding leases; an idle one four times per
``lost_after``) in one ``Store.heartbeat`` call, then tells each worker the state of its leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from helixcode.domain.models import Beat, LeaseState
from helixcode.errors import StoreError
from helixcode.store.store import Store
from helixcode.worker.resources import ResourceSampler

__all__ = ["BeatHub", "Beating"]

log = logging.getLogger(__name__)


class Beating(Protocol):
    """What the hub needs of a worker."""

    id: str

    def beat(self) -> Beat:
        """Its beat now: status and the leases it holds."""
        ...

    def lease_states(self, states: Mapping[int, LeaseState]) -> None:
        """Act on what the beat found (stop the attempts whose lease is gone)."""
        ...

    def stop(self) -> None: ...


class BeatHub:
    """The process's heartbeat for one store (per event loop). ``shared(store)`` gives it; workers
    ``join`` and ``leave``; the loop runs while anyone is joined. Every worker of a process shares the
    host, so one resource sample per beat describes them all."""

    _hubs: ClassVar[dict[tuple[int, int], BeatHub]] = {}

    def __init__(self, store: Store, with_gpu: bool = True) -> None:
        self.store = store
        self.interval = store.settings.tasks.heartbeat_interval
        # Idle, a worker only says that it lives, four times per ``lost_after``: three beats can be
        # late, on a loaded host, before the reaper calls it lost.
        self.idle = max(self.interval, store.settings.workers.lost_after / 4)
        self.sampler = ResourceSampler(with_gpu=with_gpu)
        self.static = self.sampler.static()
        self._members: dict[str, Beating] = {}
        self._sent: dict[str, tuple[float, str | None]] = {}  # worker -> (when, status) of its last beat
        self._task: asyncio.Task[None] | None = None
        self._work = asyncio.Event()  # a member started work: renew its lease an interval from now
        self.rounds = 0  # round trips made (the bench's and the tests' count)

    @classmethod
    def shared(cls, store: Store, with_gpu: bool = True) -> BeatHub:
        key = (id(store), id(asyncio.get_running_loop()))
        hub = cls._hubs.get(key)
        if hub is None:
            hub = cls._hubs[key] = cls(store, with_gpu)
        return hub

    def join(self, member: Beating) -> None:
        self._members[member.id] = member
        self._sent[member.id] = (time.monotonic(), member.beat().status)  # registration was its first
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="heartbeat")
            self._task.add_done_callback(self._died)

    async def leave(self, member: Beating) -> None:
        self._members.pop(member.id, None)
        self._sent.pop(member.id, None)
        if not self._members and self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for key, hub in list(self._hubs.items()):
                if hub is self:
                    del self._hubs[key]

    def work_started(self) -> None:
        """A member claimed a task: its lease is renewed a beat interval from now, not when an idle
        wait ends."""
        self._work.set()

    async def _run(self) -> None:
        # The first round comes after a random part of the interval, so processes started together do
        # not beat in step.
        await asyncio.sleep(random.uniform(0, self.interval))
        while True:
            await self.beat_once()
            await self._until_next_round()

    async def _until_next_round(self) -> None:
        """A beat interval while anyone holds leases; otherwise until the first idle member is due, or
        a beat interval after a member starts work."""
        if any(member.beat().leases for member in self._members.values()):
            await asyncio.sleep(self.interval)
            return
        earliest = min((when for when, _status in self._sent.values()), default=time.monotonic())
        self._work.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._work.wait(), max(0.0, earliest + self.idle - time.monotonic()))
        if self._work.is_set():
            await asyncio.sleep(self.interval)

    async def beat_once(self) -> None:
        """Send the beats that are due: a worker holding leases (they must be renewed), whose status
        changed (draining), or idle for about ``idle`` seconds (within half an interval, so that idle
        workers' beats ride along with a round that is made anyway)."""
        now = time.monotonic()
        due: list[tuple[Beating, Beat]] = []
        for member in list(self._members.values()):
            beat = member.beat()
            when, status = self._sent.get(member.id, (0.0, None))
            if beat.leases or beat.status != status or now - when + self.interval / 2 >= self.idle:
                due.append((member, beat))
        if not due:
            return
        try:
            sample: dict[str, Any] = {**self.static, **await asyncio.to_thread(self.sampler.sample)}
            states = await self.store.heartbeat([beat for _m, beat in due], resources=sample)
        except StoreError as exc:
            log.warning("heartbeat failed: %s", exc, extra={"action": "worker.heartbeat_error"})
            return
        self.rounds += 1
        for member, beat in due:
            if member.id in self._sent:  # not left meanwhile
                self._sent[member.id] = (now, beat.status)
            member.lease_states(states.get(member.id, {}))

    def _died(self, task: asyncio.Task[None]) -> None:
        """The loop must never end while workers beat: if it crashes, say why and stop them (a worker
        that cannot renew its leases would lose them one by one)."""
        if task.cancelled() or task is not self._task:
            return
        log.error("heartbeat loop crashed: %r", task.exception(), extra={"action": "worker.helper_crash"})
        for member in list(self._members.values()):
            member.stop()
