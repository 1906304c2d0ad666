"""TaskManager: the facade the edges (CLI, API, MCP) call; it owns no SQL, only orchestration."""

from __future__ import annotations

from pathlib import Path

from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Event, Job, JobSummary, Task
from helixcode.domain.plan import JobSpec
from helixcode.store.store import Store

__all__ = ["TaskManager"]


class TaskManager:
    """Submit, inspect and control jobs. One instance per store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def submit(self, spec: JobSpec, *, workdir: Path) -> Job:
        """Create a job from a validated plan; ``workdir`` is an absolute path where shell tasks run."""
        return await self.store.create_job(spec, workdir=str(workdir))

    async def resolve(self, ref: str) -> str:
        return await self.store.resolve_job_id(ref)

    async def summary(self, ref: str) -> JobSummary:
        return await self.store.job_summary(await self.resolve(ref))

    async def jobs(self, limit: int = 50) -> list[JobSummary]:
        return await self.store.list_jobs(limit)

    async def tasks(self, ref: str, statuses: list[TaskStatus] | None = None) -> list[Task]:
        return await self.store.list_tasks(await self.resolve(ref), statuses)

    async def events(self, ref: str, after_id: int = 0, limit: int = 1000) -> list[Event]:
        return await self.store.list_events(await self.resolve(ref), after_id, limit)
