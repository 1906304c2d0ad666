"""What `helix watch` shows, read through ``JobControl`` only (so a local database and a `helix serve`
are the same code): recent jobs, one job with its tasks, that job's new events, and the workers with
their recent CPU and memory use.

A worker's resource samples come from its heartbeats. The stored history
(``JobControl.worker_history``: the database's, or the API's ``/workers/{ref}/history``) fills the
sparklines from the start; where it cannot be had (a server that fails the call) they fill from the
samples seen since the watch began (``Feed.stored_history`` says which).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from helixcode.errors import HelixError, NotFound

if TYPE_CHECKING:
    from helixcode.domain.models import Event, JobSummary, Task
    from helixcode.domain.records import WorkerInfo
    from helixcode.engine.protocol import JobControl

__all__ = ["Feed", "JobView", "Sample", "WorkerTrace"]

#: Samples kept per worker for its sparklines.
POINTS = 60
#: How far back a worker's stored history is read when it is first seen (seconds).
HISTORY_SECONDS = 600.0
#: Events shown when a job is first selected: its latest ones.
FIRST_EVENTS = 200
PAGE = 1000

Sample = tuple[float, Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class JobView:
    summary: JobSummary
    tasks: list[Task]


@dataclass(frozen=True, slots=True)
class WorkerTrace:
    """A worker and its latest resource samples, oldest first."""

    worker: WorkerInfo
    samples: tuple[Sample, ...]


class Feed:
    """Reads for one watch session; it remembers each job's event cursor and each worker's samples."""

    def __init__(self, control: JobControl, *, points: int = POINTS) -> None:
        self.control = control
        self.points = points
        self._cursors: dict[str, int] = {}
        self._samples: dict[str, deque[Sample]] = {}
        #: True: sparklines start from the stored history; False: from what this session saw (remote);
        #: None: no worker seen yet.
        self.stored_history: bool | None = None

    async def jobs(self, limit: int = 50) -> list[JobSummary]:
        return await self.control.jobs(limit)

    async def job(self, ref: str) -> JobView:
        summary = await self.control.summary(ref)
        return JobView(summary, await self.control.tasks(summary.job.id))

    async def events(self, job_id: str) -> list[Event]:
        """The job's events since the last call for it (at first, its latest ``FIRST_EVENTS``);
        settled, so that a follower on PostgreSQL misses none (see ``Store.list_events``)."""
        first = job_id not in self._cursors
        found: list[Event] = []
        while True:
            page = await self.control.events(job_id, self._cursors.get(job_id, 0), PAGE, settled=True)
            if page:
                self._cursors[job_id] = page[-1].id
            found = (found + page)[-FIRST_EVENTS:] if first else found + page
            if len(page) < PAGE:
                self._cursors.setdefault(job_id, 0)
                return found

    def forget(self, job_id: str) -> None:
        """Start the job's events afresh (its log was cleared)."""
        self._cursors.pop(job_id, None)

    async def workers(self) -> list[WorkerTrace]:
        """The workers not stopped, each with its samples (its latest heartbeat's added when new)."""
        found = await self.control.workers(include_stopped=False)
        traces = []
        for w in found:
            samples = self._samples.get(w.id)
            if samples is None:
                samples = self._samples[w.id] = deque(await self._history(w), maxlen=self.points)
            at = w.last_heartbeat_at
            if at is not None and w.resources and (not samples or at > samples[-1][0]):
                samples.append((at, dict(w.resources)))
            traces.append(WorkerTrace(w, tuple(samples)))
        return traces

    async def _history(self, worker: WorkerInfo) -> list[Sample]:
        if self.stored_history is False:
            return []
        try:
            _, samples = await self.control.worker_history(worker.id, time.time() - HISTORY_SECONDS)
        except NotFound:
            return []
        except HelixError:  # no stored history to be had: the samples seen from now on
            self.stored_history = False
            return []
        self.stored_history = True
        kept: list[Sample] = list(samples)
        return kept[-self.points :]
