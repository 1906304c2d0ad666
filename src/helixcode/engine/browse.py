"""``Browse``: what the web dashboard reads, by job id (its routes resolve a job's reference once).

Pages of jobs, a job's graph, timeline and event log, the states of a few tasks; the live feed's
reads (``list_events`` with ``settled``, ``job_summary``, ``get_job``) are here too because it polls
by job id many times a second and must not resolve a reference each time. Each query reads only what
a page draws (see ``store.browse``).
"""

from __future__ import annotations

from collections.abc import Collection

from helixcode.domain.enums import JobStatus
from helixcode.domain.models import Event, Job, JobSummary, Task
from helixcode.domain.views import AttemptSpan, GraphRow, JobPage, TaskState
from helixcode.store.store import Store

__all__ = ["Browse"]


class Browse:
    """The dashboard's reads."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def list_jobs_page(
        self, statuses: Collection[JobStatus] = (), before: tuple[float, str] | None = None, limit: int = 50
    ) -> JobPage:
        """Jobs newest first, older than the ``before`` cursor (created at, id)."""
        return await self._store.list_jobs_page(statuses, before, limit)

    async def get_job(self, job_id: str) -> Job:
        return await self._store.get_job(job_id)

    async def job_summary(self, job_id: str) -> JobSummary:
        return await self._store.job_summary(job_id)

    async def graph_rows(self, job_id: str) -> list[GraphRow]:
        return await self._store.graph_rows(job_id)

    async def find_task(self, job_id: str, key: str) -> Task:
        """One task by key, read alone (``TaskViews.get_task`` reads the job's tasks)."""
        return await self._store.find_task(job_id, key)

    async def task_states(self, job_id: str, keys: Collection[str] | None = None) -> list[TaskState]:
        return await self._store.task_states(job_id, keys)

    async def job_spans(self, job_id: str) -> list[AttemptSpan]:
        return await self._store.job_spans(job_id)

    async def last_event_id(self, job_id: str) -> int:
        """The id the graph's states are as of (0 before any event)."""
        return await self._store.last_event_id(job_id)

    async def recent_events(self, job_id: str, limit: int = 200) -> list[Event]:
        return await self._store.recent_events(job_id, limit)

    async def list_events(
        self, job_id: str, after_id: int = 0, limit: int = 1000, *, settled: bool = False
    ) -> list[Event]:
        """``settled`` for a follower of a live job (see ``Store.list_events``)."""
        return await self._store.list_events(job_id, after_id, limit, settled=settled)
