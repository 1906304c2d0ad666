"""Jobs: submission in one transaction, lookup, summaries, listings and the event log."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.gc_pause import gc_paused
from helixcode.domain.graph import chain_lengths
from helixcode.domain.models import Event, Job, JobSummary, Task
from helixcode.domain.progress import LeafProgress, estimate_eta
from helixcode.errors import NotFound
from helixcode.store.base import DONE, TERMINAL, StoreBase, event
from helixcode.store.database import db_now
from helixcode.store.rows import JOB_COLUMNS, event_from_row, job_from_row, task_from_row, task_values
from helixcode.store.tables import events, jobs, llm_calls, task_dependencies, tasks

if TYPE_CHECKING:  # only annotations: the plan models (pydantic, YAML) load only where a plan is read
    from helixcode.domain.plan import JobSpec

__all__ = ["JobOps"]

#: How old an event must be before a settled read returns it (see ``list_events``).
SETTLE_SECONDS = 1.0
#: Submissions at least this large refresh the planner's statistics (PostgreSQL).
ANALYZE_AFTER = 1000


class JobOps(StoreBase):
    # -- jobs -----------------------------------------------------------------------------------

    async def create_job(
        self, spec: JobSpec, *, workdir: str | None = None, trace_context: str | None = None
    ) -> Job:
        """Insert a validated job with all its tasks and dependencies in one transaction;
        ``trace_context``: the ``traceparent`` its attempts' spans continue (``helixcode.tracing``)."""
        with gc_paused():  # a large graph is hundreds of thousands of new objects (see gc_paused)
            return await self._create_job(spec, workdir, trace_context)

    async def _create_job(self, spec: JobSpec, workdir: str | None, trace_context: str | None) -> Job:
        defaults = self.settings.tasks
        job_id = uuid.uuid4().hex[:12]
        dumped = spec.model_dump(mode="json")  # once: the job's record of its plan, and each task's run
        async with self._write() as conn:
            now = await self._now(conn)
            await conn.execute(
                jobs.insert().values(
                    id=job_id,
                    name=spec.name,
                    description=spec.description,
                    status=JobStatus.RUNNING.value,
                    workdir=workdir or spec.workdir,
                    max_cost=spec.max_cost if spec.max_cost is not None else self.settings.llm.job_max_cost,
                    max_tokens=spec.max_tokens
                    if spec.max_tokens is not None
                    else self.settings.llm.job_max_tokens,
                    spec=dumped,
                    trace_context=trace_context,
                    created_at=now,
                    updated_at=now,
                )
            )
            chains = chain_lengths({t.id: t.depends_on for t in spec.tasks})
            rows = [
                task_values(
                    t,
                    job_id=job_id,
                    key=t.id,
                    run=plain["run"],
                    now=now,
                    defaults=defaults,
                    chain=chains[t.id],
                )
                for t, plain in zip(spec.tasks, dumped["tasks"], strict=True)
            ]
            # A plain executemany (the drivers' fast path), then the ids in one query: far quicker for
            # large graphs than RETURNING, which SQLAlchemy must batch and sort.
            await self._bulk_insert(conn, tasks, rows)
            found = await conn.execute(sa.select(tasks.c.key, tasks.c.id).where(tasks.c.job_id == job_id))
            ids: dict[str, int] = {key: task_id for key, task_id in found.all()}
            deps = [{"task_id": ids[t.id], "depends_on_id": ids[d]} for t in spec.tasks for d in t.depends_on]
            await self._bulk_insert(conn, task_dependencies, deps)
            created = [event(job_id, "created", now, tasks=len(rows))]
            ready = [event(job_id, "ready", now, task_id=ids[t.id]) for t in spec.tasks if not t.depends_on]
            await self._events(conn, created + ready)
            job_row = (
                (await conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id))).mappings().one()
            )
        if self.dialect == "postgresql" and len(rows) >= ANALYZE_AFTER:
            # Fresh statistics now, not whenever autovacuum gets to it: with stale ones the planner
            # believes the queue is tiny and sorts every ready task on each claim instead of using the
            # claim index (100 ms instead of 0.2 ms with 100,000 queued). SKIP_LOCKED: a table being
            # vacuumed is left alone. A plain ANALYZE waits for autovacuum's lock, and autovacuum gives
            # way to a waiter: a stream of large submissions (the soak's, one every few seconds) cancelled
            # every autovacuum of ``tasks``, which then grew to millions of dead rows.
            async with self._write() as conn:
                await conn.execute(sa.text("ANALYZE (SKIP_LOCKED) tasks, task_dependencies"))
        return job_from_row(job_row)

    async def resolve_job_id(self, ref: str) -> str:
        """A job id from a unique prefix of it (ids are long; people type a few characters)."""
        async with self._read() as conn:
            found = (
                (
                    await conn.execute(
                        sa.select(jobs.c.id).where(jobs.c.id.startswith(ref, autoescape=True)).limit(2)
                    )
                )
                .scalars()
                .all()
            )
        if not found:
            raise NotFound(f"no job '{ref}'")
        if len(found) > 1 and ref not in found:
            raise NotFound(f"job '{ref}' is ambiguous: give more characters")
        return ref if ref in found else found[0]

    async def get_job(self, job_id: str) -> Job:
        async with self._read() as conn:
            row = (await conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id))).mappings().first()
        if row is None:
            raise NotFound(f"no job '{job_id}'")
        return job_from_row(row)

    async def job_summary(self, job_id: str) -> JobSummary:
        """Counts, weighted progress, and an ETA measured from finished tasks' durations."""
        job = await self.get_job(job_id)
        async with self._read() as conn:
            summary = (await self._summaries(conn, [job]))[0]
            if job.status.terminal:
                return summary
            etas = await self._etas(conn, [job_id])
        return replace(summary, eta_seconds=etas[job_id])

    async def _etas(self, conn: AsyncConnection, job_ids: Sequence[str]) -> dict[str, float | None]:
        """The ETA of each job from its leaf tasks (one query for them all)."""
        now = await self._now(conn)
        children = tasks.alias("children")
        leaf = ~sa.exists().where(children.c.parent_id == tasks.c.id)
        rows = (
            await conn.execute(
                sa.select(
                    tasks.c.job_id,
                    tasks.c.type,
                    tasks.c.status,
                    tasks.c.progress,
                    tasks.c.started_at,
                    tasks.c.finished_at,
                ).where(tasks.c.job_id.in_(job_ids), leaf)
            )
        ).all()
        leaves: dict[str, list[LeafProgress]] = {job_id: [] for job_id in job_ids}
        for job_id, t, s, p, st, f in rows:
            leaves[job_id].append(
                LeafProgress(
                    type=t,
                    progress=1.0 if s in DONE else p,
                    done=s in TERMINAL,
                    duration=(f - st) if s == TaskStatus.SUCCEEDED.value and f and st else None,
                    running_for=(now - st) if s == TaskStatus.RUNNING.value and st else None,
                )
            )
        return {
            job_id: estimate_eta(found, sum(1 for leaf in found if leaf.running_for is not None))
            for job_id, found in leaves.items()
        }

    async def list_jobs(self, limit: int = 50) -> list[JobSummary]:
        async with self._read() as conn:
            rows = (
                await conn.execute(sa.select(*JOB_COLUMNS).order_by(jobs.c.created_at.desc()).limit(limit))
            ).mappings()
            return await self._summaries(conn, [job_from_row(r) for r in rows])

    async def _summaries(self, conn: AsyncConnection, job_list: Sequence[Job]) -> list[JobSummary]:
        if not job_list:
            return []
        done = sa.case((tasks.c.status.in_(DONE), 1.0), else_=tasks.c.progress)
        children = tasks.alias("children")
        leaf = ~sa.exists().where(children.c.parent_id == tasks.c.id)
        stmt = (
            sa.select(
                tasks.c.job_id,
                tasks.c.status,
                sa.func.count(),
                sa.func.sum(sa.case((leaf, tasks.c.weight), else_=0.0)),
                sa.func.sum(sa.case((leaf, tasks.c.weight * done), else_=0.0)),
            )
            .where(tasks.c.job_id.in_([j.id for j in job_list]))
            .group_by(tasks.c.job_id, tasks.c.status)
        )
        counts: dict[str, dict[TaskStatus, int]] = {j.id: {} for j in job_list}
        weights: dict[str, list[float]] = {j.id: [0.0, 0.0] for j in job_list}
        for job_id, status, n, total, finished in (await conn.execute(stmt)).all():
            counts[job_id][TaskStatus(status)] = n
            weights[job_id][0] += total or 0.0
            weights[job_id][1] += finished or 0.0
        usage = await self._usage_of_jobs(conn, [j.id for j in job_list])
        return [
            JobSummary(
                job=j,
                counts=counts[j.id],
                progress=(weights[j.id][1] / weights[j.id][0]) if weights[j.id][0] else 0.0,
                tokens=usage.get(j.id, (0, None))[0],
                cost_usd=usage.get(j.id, (0, None))[1],
            )
            for j in job_list
        ]

    @staticmethod
    async def _usage_of_jobs(
        conn: AsyncConnection, job_ids: Sequence[str]
    ) -> dict[str, tuple[int, float | None]]:
        """Tokens and USD of each job's model calls (one grouped query for the page)."""
        c = llm_calls.c
        rows = await conn.execute(
            sa.select(c.job_id, sa.func.sum(c.prompt_tokens + c.completion_tokens), sa.func.sum(c.cost_usd))
            .where(c.job_id.in_(job_ids))
            .group_by(c.job_id)
        )
        return {
            job_id: (int(tokens or 0), None if cost is None else float(cost)) for job_id, tokens, cost in rows
        }

    # -- tasks ----------------------------------------------------------------------------------

    async def list_tasks(self, job_id: str, statuses: Iterable[TaskStatus] | None = None) -> list[Task]:
        """The job's tasks in creation order, with dependency and parent keys filled in."""
        stmt = sa.select(tasks).where(tasks.c.job_id == job_id).order_by(tasks.c.id)
        if statuses is not None:
            stmt = stmt.where(tasks.c.status.in_([s.value for s in statuses]))
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
            keys = dict(
                (await conn.execute(sa.select(tasks.c.id, tasks.c.key).where(tasks.c.job_id == job_id))).all()
            )
            dep_rows = (
                await conn.execute(
                    sa.select(task_dependencies.c.task_id, task_dependencies.c.depends_on_id)
                    .join(tasks, tasks.c.id == task_dependencies.c.task_id)
                    .where(tasks.c.job_id == job_id)
                    .order_by(task_dependencies.c.task_id, task_dependencies.c.depends_on_id)
                )
            ).all()
        deps: dict[int, list[str]] = {}
        for task_id, dep_id in dep_rows:
            deps.setdefault(task_id, []).append(keys[dep_id])
        return [
            task_from_row(
                r, tuple(deps.get(r["id"], ())), keys.get(r["parent_id"]) if r["parent_id"] else None
            )
            for r in rows
        ]

    async def get_task(self, job_id: str, key: str) -> Task:
        for task in await self.list_tasks(job_id):
            if task.key == key:
                return task
        raise NotFound(f"job {job_id} has no task '{key}'")

    # -- events ---------------------------------------------------------------------------------

    async def list_events(
        self, job_id: str, after_id: int = 0, limit: int = 1000, *, settled: bool = False
    ) -> list[Event]:
        """Events of a job after ``after_id``, oldest first; the id doubles as a resume cursor.

        ``settled``, for readers that follow a live log by that cursor: on PostgreSQL, ids come from a
        sequence and concurrent transactions commit out of id order, so a reader that moved its cursor
        past a young event could miss an older id that commits a moment later. Settled reads return
        only events at least ``SETTLE_SECONDS`` old. SQLite has one writer at a time: ids are in commit
        order there. Once a job has ended, read without it for the rest."""
        stmt = (
            sa.select(events, tasks.c.key.label("task_key"))
            .select_from(events.outerjoin(tasks, tasks.c.id == events.c.task_id))
            .where(events.c.job_id == job_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        if settled and self.dialect == "postgresql":
            stmt = stmt.where(events.c.created_at <= db_now() - SETTLE_SECONDS)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [event_from_row(r, r["task_key"]) for r in rows]
