"""``TaskViews``: one task's record (its attempts, kept checkpoints and events) and a job's outputs,
by the ids the engine resolved, for the API's and MCP's task details and the CLI's reports.

``TaskManager.tasks`` and ``task_attempts`` are the part of this that ``JobControl`` carries (also
remotely); these are the reads only a caller next to the database makes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Checkpoint, Event, Task
from helixcode.domain.records import AttemptRecord
from helixcode.store.store import Store

__all__ = ["TaskViews"]


class TaskViews:
    """Reads of tasks by job id and task id."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def get_task(self, job_id: str, key: str) -> Task:
        return await self._store.get_task(job_id, key)

    async def list_tasks(self, job_id: str, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        """The job's tasks as stored (``TaskManager.tasks`` adds each one's tokens and cost)."""
        return await self._store.list_tasks(job_id, statuses)

    async def list_attempts(self, task_id: int) -> list[AttemptRecord]:
        return await self._store.list_attempts(task_id)

    async def list_checkpoints(self, task_id: int) -> list[Checkpoint]:
        return await self._store.list_checkpoints(task_id)

    async def task_events(self, task_id: int, after_id: int = 0, limit: int = 1000) -> list[Event]:
        return await self._store.task_events(task_id, after_id, limit)

    async def task_outputs(self, job_id: str) -> dict[str, dict[str, Any]]:
        """Each task's latest output, by key."""
        return await self._store.task_outputs(job_id)
