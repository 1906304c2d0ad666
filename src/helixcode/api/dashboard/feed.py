"""Live job updates for browsers: one follower per job in the server, shared by every dashboard open
on it.

Fifty people watching one job must not cost the database fifty polls a second. The first browser to
subscribe to a job starts its follower, an asyncio task that polls the job's event log from a
cursor; each batch it finds is read once more for the touched tasks' current states (one query) and
the job's summary, then handed to every subscriber's queue. The last subscriber to leave stops it.

A browser that subscribes late (or reconnects with ``Last-Event-ID``) first reads what it missed
from the store itself, once, then takes the shared batches, skipping ids it has already seen:
settled reads (see ``Browse.list_events``) never skip an id, so nothing is lost on PostgreSQL either.

States carry the id of the last event read before them (``tag``): a browser applies a state only if
it is not older than the one it shows, and since every change writes an event, the last state it
receives for a task is that task's state in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from helixcode.domain.models import Event, JobSummary
from helixcode.domain.views import TaskState
from helixcode.engine.browse import Browse

__all__ = ["Batch", "FeedHub"]

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(frozen=True, slots=True)
class Batch:
    """Events in id order, the states of the tasks they touch (read after them), and the job's
    summary when it was read; ``end`` once the job has finished and every event was sent."""

    events: list[Event]
    states: list[TaskState]
    tag: int
    summary: JobSummary | None = None
    end: bool = False


@dataclass(eq=False)
class _Feed:
    job_id: str
    cursor: int
    queues: set[asyncio.Queue[Batch]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class FeedHub:
    """The followers of the jobs browsers watch, keyed by job id."""

    def __init__(self, browse: Browse, *, poll: float = 0.5, status_every: float = 5.0) -> None:
        self.browse = browse
        self.poll = poll
        self.status_every = status_every
        self._feeds: dict[str, _Feed] = {}

    def following(self) -> int:
        """How many jobs have a follower now (for tests and metrics)."""
        return len(self._feeds)

    def watchers(self, job_id: str) -> int:
        """How many subscribers the job's follower serves now."""
        feed = self._feeds.get(job_id)
        return len(feed.queues) if feed else 0

    @asynccontextmanager
    async def subscribe(
        self, job_id: str, after: int, *, idle: float = 15.0
    ) -> AsyncIterator[AsyncIterator[Batch | None]]:
        """Batches for one browser: what it missed since ``after``, then the live ones; None after
        ``idle`` seconds without any (a stream's cue for a keep-alive)."""
        queue: asyncio.Queue[Batch] = asyncio.Queue()
        feed = self._feeds.get(job_id)
        first = feed is None
        if feed is None:
            feed = self._feeds[job_id] = _Feed(job_id, after)
            feed.task = asyncio.create_task(self._follow(feed), name=f"helix-feed-{job_id}")
        feed.queues.add(queue)
        try:
            # The follower that starts here starts at this browser's cursor: nothing to catch up.
            yield self._batches(job_id, queue, after, idle, catch_up=not first)
        finally:
            feed.queues.discard(queue)
            if not feed.queues and self._feeds.get(job_id) is feed:
                del self._feeds[job_id]
                await _stop(feed.task)

    async def aclose(self) -> None:
        feeds, self._feeds = list(self._feeds.values()), {}
        for feed in feeds:
            await _stop(feed.task)

    async def _batches(
        self, job_id: str, queue: asyncio.Queue[Batch], after: int, idle: float, *, catch_up: bool
    ) -> AsyncIterator[Batch | None]:
        cursor = after
        while catch_up:
            found = await self.browse.list_events(job_id, cursor, BATCH, settled=True)
            if not found:
                break
            yield await self._with_states(job_id, found)
            cursor = found[-1].id
            catch_up = len(found) == BATCH
        while True:
            try:
                batch = await asyncio.wait_for(queue.get(), idle)
            except TimeoutError:
                yield None
                continue
            fresh = [e for e in batch.events if e.id > cursor]
            if batch.events and not fresh and not batch.end:
                continue  # all sent already, by the catch-up read
            yield Batch(fresh, batch.states, batch.tag, batch.summary, batch.end)
            if batch.end:
                return
            cursor = max(cursor, batch.tag)

    async def _with_states(self, job_id: str, found: list[Event], *, summary: bool = False) -> Batch:
        keys = {e.task_key for e in found if e.task_key is not None}
        states = await self.browse.task_states(job_id, keys)
        return Batch(
            found,
            states,
            found[-1].id,
            await self.browse.job_summary(job_id) if summary else None,
        )

    async def _follow(self, feed: _Feed) -> None:
        """Poll the log until nobody listens or the job has finished (then say so and stop)."""
        checked = 0.0
        try:
            while True:
                found = await self.browse.list_events(feed.job_id, feed.cursor, BATCH, settled=True)
                if found:
                    feed.cursor = found[-1].id
                    self._publish(feed, await self._with_states(feed.job_id, found, summary=True))
                job_level = any(e.task_key is None for e in found)
                if job_level or time.monotonic() - checked >= self.status_every:
                    checked = time.monotonic()
                    if (await self.browse.get_job(feed.job_id)).status.terminal:
                        await self._finish(feed)
                        return
                if len(found) < BATCH:
                    await asyncio.sleep(self.poll)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "job follower failed", extra={"action": "dashboard.feed_failed", "job": feed.job_id}
            )
            self._publish(feed, Batch([], [], feed.cursor, end=True))
            self._drop(feed)

    async def _finish(self, feed: _Feed) -> None:
        """The job's last events commit with its status: read the rest unsettled, then end."""
        rest: list[Event] = []
        while found := await self.browse.list_events(feed.job_id, feed.cursor, BATCH):
            rest.extend(found)
            feed.cursor = found[-1].id
        last = await self._with_states(feed.job_id, rest, summary=True) if rest else None
        summary = last.summary if last else await self.browse.job_summary(feed.job_id)
        self._publish(feed, Batch(rest, last.states if last else [], feed.cursor, summary=summary, end=True))
        self._drop(feed)

    def _publish(self, feed: _Feed, batch: Batch) -> None:
        for queue in feed.queues:
            queue.put_nowait(batch)

    def _drop(self, feed: _Feed) -> None:
        """Forget a follower that ended by itself: a later subscriber starts a new one."""
        if self._feeds.get(feed.job_id) is feed:
            del self._feeds[feed.job_id]


async def _stop(task: asyncio.Task[None] | None) -> None:
    if task is None or task.done():
        return
    if task is asyncio.current_task():
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
