"""``JobControl``: what an edge may ask of the engine, whether the engine is here or behind the API.

Two classes satisfy it: ``engine.manager.TaskManager`` over a local ``Store``, and
``api.client.RemoteManager`` over the REST API of a `helix serve`. The CLI's commands and the public
Python client (``helixcode.Client``) are written against this protocol only, so one code path serves
both backends and no ``cast`` pretends that one is the other. Both return the same domain records and
raise the same errors (``NotFound``, ``PlanError``, ``SchedulerError``...).

A few operations exist only next to the database (``split``, ``worker_history``): the remote manager
has them too, and raises a ``HelixError`` that says so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Event, Job, JobSummary, Task
from helixcode.domain.plan import JobSpec
from helixcode.domain.records import AttemptRecord, WorkerInfo

__all__ = ["JobControl"]


class JobControl(Protocol):
    """Submit, inspect and control jobs. A job ``ref`` is its id or a unique prefix of it."""

    async def submit(self, spec: JobSpec, *, workdir: Path | str | None) -> Job:
        """Create a job from a validated plan. ``workdir``: where its shell tasks run (an absolute path
        or a repository URL); ``None`` keeps the plan's own, or the server's directory remotely."""
        ...

    async def submit_goal(self, goal: str, *, workdir: Path | str | None, name: str | None = None) -> Job:
        """Create the one-task job that plans ``goal`` (see ``domain.goals.goal_spec``)."""
        ...

    async def resolve(self, ref: str) -> str: ...

    async def summary(self, ref: str) -> JobSummary: ...

    async def jobs(self, limit: int = 50) -> list[JobSummary]: ...

    async def tasks(self, ref: str, statuses: list[TaskStatus] | None = None) -> list[Task]: ...

    async def task_attempts(self, ref: str, key: str) -> tuple[Task, list[AttemptRecord]]:
        """A task and its finished attempts, oldest first."""
        ...

    async def events(
        self, ref: str, after_id: int = 0, limit: int = 1000, *, settled: bool = False
    ) -> list[Event]:
        """Events after ``after_id``, oldest first; ``settled`` for a reader following a live job."""
        ...

    async def pause(self, ref: str, reason: str = "paused by request") -> str: ...

    async def resume(
        self,
        ref: str,
        retry: Sequence[str] = (),
        skip: Sequence[str] = (),
        *,
        raise_cost: float | None = None,
        raise_tokens: int | None = None,
    ) -> str: ...

    async def cancel(self, ref: str) -> int:
        """Cancel the job; the number of tasks cancelled."""
        ...

    async def split(
        self,
        ref: str,
        key: str,
        items: Mapping[str, float],
        *,
        parts: int | None = None,
        min_chunk: float = 0.0,
    ) -> list[str]: ...

    async def workers(self, include_stopped: bool = True) -> list[WorkerInfo]: ...

    async def worker_history(
        self, ref: str, since: float = 0.0
    ) -> tuple[WorkerInfo, list[tuple[float, dict[str, Any]]]]: ...
