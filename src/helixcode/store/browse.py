"""What the web dashboard reads: pages of jobs by a keyset cursor, a job's graph and timeline, the
states of a few tasks, the tasks each worker holds, and the fleet's recent model calls per provider.

Each query reads only what a page draws (a 5,000-task graph does not decode 5,000 run payloads) and
each is bounded by an index: jobs by ``created_at``, tasks by ``(job_id, key)``, the timeline's
attempts by the ``results`` primary key, model calls by their id.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace

import sqlalchemy as sa

from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.models import Event, Task
from helixcode.domain.views import (
    RECENT_CALLS,
    AttemptSpan,
    CallError,
    GraphRow,
    JobPage,
    ProviderUse,
    RunningTask,
    TaskState,
)
from helixcode.errors import NotFound
from helixcode.store.base import status_is
from helixcode.store.jobs import JobOps
from helixcode.store.limits import PROVIDER_ROW
from helixcode.store.rows import JOB_COLUMNS, event_from_row, job_from_row, task_from_row
from helixcode.store.tables import events, jobs, llm_calls, llm_limits, results, task_dependencies, tasks

__all__ = ["BrowseOps"]

#: Failed calls listed per provider.
RECENT_ERRORS = 5


class BrowseOps(JobOps):
    async def list_jobs_page(
        self,
        statuses: Collection[JobStatus] = (),
        before: tuple[float, str] | None = None,
        limit: int = 50,
    ) -> JobPage:
        """Jobs newest first, ``limit`` at a time. ``before`` is the previous page's ``next``: a keyset
        cursor (created_at, id), so page 100 costs what page 1 does (an OFFSET would scan 5,000 rows)."""
        stmt = sa.select(*JOB_COLUMNS).order_by(jobs.c.created_at.desc(), jobs.c.id.desc()).limit(limit + 1)
        if statuses:
            stmt = stmt.where(jobs.c.status.in_([s.value for s in statuses]))
        if before is not None:
            at, job_id = before
            # ``created_at <= at`` alone bounds the index scan; the OR only settles ties.
            stmt = stmt.where(jobs.c.created_at <= at, sa.or_(jobs.c.created_at < at, jobs.c.id < job_id))
        async with self._read() as conn:
            found = [job_from_row(r) for r in (await conn.execute(stmt)).mappings()]
            summaries = await self._summaries(conn, found[:limit])
            # The ETA needs every leaf of a job: only the unfinished jobs of the page pay for it.
            unfinished = [s.job.id for s in summaries if not s.job.status.terminal]
            etas = await self._etas(conn, unfinished) if unfinished else {}
        summaries = [replace(s, eta_seconds=etas[s.job.id]) if s.job.id in etas else s for s in summaries]
        last = found[limit - 1] if len(found) > limit else None
        return JobPage(summaries, None if last is None else (last.created_at, last.id))

    async def graph_rows(self, job_id: str) -> list[GraphRow]:
        """Every task of the job in creation order, with its dependencies' and parent's keys."""
        t = tasks.c
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.id, t.key, t.title, t.type, t.status, t.parent_id)
                    .where(t.job_id == job_id)
                    .order_by(t.id)
                )
            ).all()
            dep_rows = (
                await conn.execute(
                    sa.select(task_dependencies.c.task_id, task_dependencies.c.depends_on_id)
                    .join(tasks, tasks.c.id == task_dependencies.c.task_id)
                    .where(tasks.c.job_id == job_id)
                )
            ).all()
        keys = {r.id: r.key for r in rows}
        deps: dict[int, list[str]] = {}
        for task_id, dep_id in dep_rows:
            deps.setdefault(task_id, []).append(keys[dep_id])
        return [
            GraphRow(
                key=r.key,
                title=r.title,
                type=r.type,
                status=r.status,
                parent=keys.get(r.parent_id) if r.parent_id is not None else None,
                deps=tuple(deps.get(r.id, ())),
            )
            for r in rows
        ]

    async def find_task(self, job_id: str, key: str) -> Task:
        """One task with its dependencies' and parent's keys, without reading the rest of the job."""
        async with self._read() as conn:
            row = (
                (await conn.execute(sa.select(tasks).where(tasks.c.job_id == job_id, tasks.c.key == key)))
                .mappings()
                .first()
            )
            if row is None:
                raise NotFound(f"job {job_id} has no task '{key}'")
            dep = tasks.alias("dep")
            deps = (
                await conn.execute(
                    sa.select(dep.c.key)
                    .join(task_dependencies, task_dependencies.c.depends_on_id == dep.c.id)
                    .where(task_dependencies.c.task_id == row["id"])
                    .order_by(dep.c.id)
                )
            ).scalars()
            depends_on = tuple(deps)
            parent = None
            if row["parent_id"] is not None:
                parent = (
                    await conn.execute(sa.select(tasks.c.key).where(tasks.c.id == row["parent_id"]))
                ).scalar_one_or_none()
        return task_from_row(row, depends_on, parent)

    async def recent_events(self, job_id: str, limit: int = 200) -> list[Event]:
        """The job's newest events, oldest first (the tail of its log, by the (job_id, id) index)."""
        stmt = (
            sa.select(events, tasks.c.key.label("task_key"))
            .select_from(events.outerjoin(tasks, tasks.c.id == events.c.task_id))
            .where(events.c.job_id == job_id)
            .order_by(events.c.id.desc())
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [event_from_row(r, r["task_key"]) for r in reversed(rows)]

    async def task_states(self, job_id: str, keys: Collection[str] | None = None) -> list[TaskState]:
        """The status and progress of the named tasks (all of the job's when ``keys`` is None)."""
        t = tasks.c
        stmt = sa.select(t.key, t.status, t.progress, t.progress_message, t.attempts).where(
            t.job_id == job_id
        )
        if keys is not None:
            if not keys:
                return []
            stmt = stmt.where(t.key.in_(list(keys)))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).all()
        return [TaskState(r.key, r.status, float(r.progress), r.progress_message, r.attempts) for r in rows]

    async def last_event_id(self, job_id: str) -> int:
        """The newest event of the job (0: none): where a live view that has read the job starts."""
        async with self._read() as conn:
            found = await conn.execute(sa.select(sa.func.max(events.c.id)).where(events.c.job_id == job_id))
            return int(found.scalar_one() or 0)

    async def job_spans(self, job_id: str) -> list[AttemptSpan]:
        """Every attempt of the job: finished ones from ``results``, running ones from the tasks."""
        t = tasks.c
        async with self._read() as conn:
            done = (
                await conn.execute(
                    sa.select(
                        t.key,
                        results.c.attempt,
                        results.c.worker_id,
                        results.c.started_at,
                        results.c.finished_at,
                        results.c.outcome,
                    )
                    .join(tasks, tasks.c.id == results.c.task_id)
                    .where(t.job_id == job_id)
                    .order_by(results.c.started_at)
                )
            ).all()
            running = (
                await conn.execute(
                    sa.select(t.key, t.attempts, t.lease_owner, t.started_at).where(
                        t.job_id == job_id, status_is(TaskStatus.RUNNING)
                    )
                )
            ).all()
        return [AttemptSpan(*r) for r in done] + [
            AttemptSpan(r.key, r.attempts, r.lease_owner, r.started_at, None, None) for r in running
        ]

    async def running_tasks(self) -> list[RunningTask]:
        """The tasks held by any worker now (the running tasks' partial index), oldest claim first."""
        t = tasks.c
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    sa.select(t.lease_owner, t.job_id, t.key, t.title, t.progress)
                    .where(status_is(TaskStatus.RUNNING))
                    .order_by(t.started_at)
                )
            ).all()
        return [RunningTask(r[0] or "", r.job_id, r.key, r.title, float(r.progress)) for r in rows]

    async def provider_use(self, providers: Sequence[str]) -> tuple[list[ProviderUse], list[CallError]]:
        """Per provider: the newest ``RECENT_CALLS`` calls of the fleet (count, failures, mean latency)
        and whether the fleet holds it down or some models back (``store.limits``); and the newest
        ``RECENT_ERRORS`` failures of each."""
        c = llm_calls.c
        async with self._read() as conn:
            now = await self._now(conn)
            newest = (
                sa.select(c.id, c.provider, c.ok, c.latency_s).order_by(c.id.desc()).limit(RECENT_CALLS)
            ).subquery()
            stats = {
                r.provider: r
                for r in await conn.execute(
                    sa.select(
                        newest.c.provider,
                        sa.func.count().label("calls"),
                        sa.func.sum(sa.case((newest.c.ok, 0), else_=1)).label("failures"),
                        sa.func.avg(newest.c.latency_s).label("latency"),
                    ).group_by(newest.c.provider)
                )
            }
            errors: list[CallError] = []
            for name in providers:
                rows = await conn.execute(
                    sa.select(c.model, c.error, c.created_at)
                    .where(c.provider == name, c.ok.is_(False))
                    .order_by(c.id.desc())
                    .limit(RECENT_ERRORS)
                )
                errors.extend(CallError(name, r.model, r.error or "", r.created_at) for r in rows)
            held = (
                await conn.execute(
                    sa.select(llm_limits).where(
                        sa.or_(llm_limits.c.down_until > now, llm_limits.c.blocked_until > now)
                    )
                )
            ).all()
        uses = []
        for name in providers:
            row = stats.get(name)
            down = [h.down_until for h in held if h.provider == name and h.model == PROVIDER_ROW]
            blocked = tuple(h.model for h in held if h.provider == name and h.model != PROVIDER_ROW)
            uses.append(
                ProviderUse(
                    provider=name,
                    calls=int(row.calls) if row else 0,
                    failures=int(row.failures or 0) if row else 0,
                    mean_latency_s=float(row.latency) if row and row.latency is not None else None,
                    down_until=float(down[0]) if down and down[0] is not None else None,
                    blocked_models=blocked,
                )
            )
        return uses, errors
