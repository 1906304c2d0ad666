"""TaskManager: the facade the edges (CLI, API, MCP) call; it owns no SQL, only orchestration.

It satisfies ``engine.protocol.JobControl``, as the API's ``RemoteManager`` does over HTTP. An edge
reaches it as ``Engine.jobs`` (``engine.engine``), beside the engine's other facades.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from helixcode import tracing
from helixcode.domain.enums import TaskStatus
from helixcode.domain.goals import goal_spec
from helixcode.domain.models import Event, Job, JobSummary, Task
from helixcode.domain.plan import JobSpec
from helixcode.domain.records import AttemptRecord, WorkerInfo
from helixcode.domain.splitting import choose_parts, split_balanced
from helixcode.errors import NotFound, PlanError
from helixcode.store.store import Store

__all__ = ["TaskManager", "job_workdir", "pick_worker"]


def job_workdir(given: str | None, base: Path) -> str:
    """Where a job submitted through the API or MCP works: a remote repository's URL as given (see
    ``helix run --repo URL``), else a path made absolute against ``base``, the server's directory."""
    from helixcode.agent.remote import remote_url  # lazy: the agent layer is not needed otherwise

    if given and (url := remote_url(given)) is not None:
        return url
    chosen = Path(given or ".").expanduser()
    return str((chosen if chosen.is_absolute() else base / chosen).resolve())


class TaskManager:
    """Submit, inspect and control jobs. One instance per store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def submit(self, spec: JobSpec, *, workdir: Path | str | None) -> Job:
        """Create a job from a validated plan; ``workdir`` is an absolute path where shell tasks run, or
        the repository URL agent tasks clone (``helix run --repo URL``); ``None`` keeps the plan's.

        Traced, its ``job.submit`` span (a child of the API request's, or of the CLI's ``TRACEPARENT``)
        is stored with the job, so that every attempt's span continues its trace."""
        with tracing.submit_span(spec.name, len(spec.tasks)) as span:
            job = await self.store.create_job(
                spec, workdir=None if workdir is None else str(workdir), trace_context=tracing.traceparent()
            )
            span.set_attribute("helix.job.id", job.id)
        return job

    async def submit_goal(self, goal: str, *, workdir: Path | str | None, name: str | None = None) -> Job:
        """Create the job that plans ``goal`` (see ``goal_spec``), as the API's goal submission does."""
        try:
            spec = goal_spec(goal, name)
        except ValueError as exc:
            raise PlanError([f"goal: {exc}"]) from exc
        return await self.submit(spec, workdir=workdir)

    async def resolve(self, ref: str) -> str:
        return await self.store.resolve_job_id(ref)

    async def summary(self, ref: str) -> JobSummary:
        return await self.store.job_summary(await self.resolve(ref))

    async def jobs(self, limit: int = 50) -> list[JobSummary]:
        return await self.store.list_jobs(limit)

    async def tasks(self, ref: str, statuses: list[TaskStatus] | None = None) -> list[Task]:
        """The job's tasks, each with the tokens and cost of its model calls."""
        job_id = await self.resolve(ref)
        found = await self.store.list_tasks(job_id, statuses)
        usage = await self.store.usage_by_task(job_id)
        return [
            replace(t, tokens=u.tokens, cost_usd=u.cost_usd) if (u := usage.get(t.id)) else t for t in found
        ]

    async def task_attempts(self, ref: str, key: str) -> tuple[Task, list[AttemptRecord]]:
        """A task and its finished attempts, oldest first (`helix logs`)."""
        task = await self.store.get_task(await self.resolve(ref), key)
        return task, await self.store.list_attempts(task.id)

    async def events(
        self, ref: str, after_id: int = 0, limit: int = 1000, *, settled: bool = False
    ) -> list[Event]:
        """``settled`` for a reader following a live job by id (see ``Store.list_events``)."""
        return await self.store.list_events(await self.resolve(ref), after_id, limit, settled=settled)

    # -- control ----------------------------------------------------------------------------------

    async def pause(self, ref: str, reason: str = "paused by request") -> str:
        job_id = await self.resolve(ref)
        await self.store.pause_job(job_id, reason)
        return job_id

    async def resume(
        self,
        ref: str,
        retry: Sequence[str] = (),
        skip: Sequence[str] = (),
        *,
        raise_cost: float | None = None,
        raise_tokens: int | None = None,
    ) -> str:
        """Resume a paused job (retrying or skipping tasks first; raising a spent budget)."""
        job_id = await self.resolve(ref)
        await self.store.resume_job(job_id, retry, skip, raise_cost=raise_cost, raise_tokens=raise_tokens)
        return job_id

    async def cancel(self, ref: str) -> int:
        return await self.store.cancel_job(await self.resolve(ref))

    async def split(
        self,
        ref: str,
        key: str,
        items: Mapping[str, float],
        *,
        parts: int | None = None,
        min_chunk: float = 0.0,
    ) -> list[str]:
        """Split a task over weighted work items into balanced parts, at most one per free worker slot."""
        job_id = await self.resolve(ref)
        slots = parts or await self.worker_slots()
        k = choose_parts(sum(items.values()), len(items), slots, min_chunk)
        return await self.store.split_task(job_id, key, split_balanced(items, k))

    async def workers(self, include_stopped: bool = True) -> list[WorkerInfo]:
        return await self.store.list_workers(include_stopped=include_stopped)

    async def worker_history(
        self, ref: str, since: float = 0.0
    ) -> tuple[WorkerInfo, list[tuple[float, dict[str, Any]]]]:
        """A worker (see :func:`pick_worker`) and its resource samples since ``since``, oldest first."""
        worker = pick_worker(await self.store.list_workers(include_stopped=True), ref)
        return worker, await self.store.worker_history(worker.id, since)

    async def worker_slots(self) -> int:
        """Task slots of the active workers; the configured concurrency when none is registered."""
        active = [w for w in await self.store.list_workers(include_stopped=False) if w.status == "active"]
        return sum(w.concurrency for w in active) or self.store.settings.workers.concurrency


def pick_worker(workers: Sequence[WorkerInfo], ref: str) -> WorkerInfo:
    """The worker ``ref`` names: its id, its name (the latest started, since a restarted worker keeps
    its name), or a unique prefix of its id."""
    if exact := [w for w in workers if w.id == ref]:
        return exact[0]
    if named := [w for w in workers if w.name == ref]:
        return max(named, key=lambda w: w.started_at or 0.0)
    found = [w for w in workers if w.id.startswith(ref)]
    if not found:
        raise NotFound(f"no worker '{ref}'")
    if len(found) > 1:
        raise NotFound(f"worker '{ref}' is ambiguous: give more characters")
    return found[0]
