"""Graph propagation: what a finished task changes for the rest of its job.

A success frees the dependents whose last dependency it was, and may finish a split parent (and, in
turn, what waits on that); a failure fails what depends on it; a job ends when nothing in it is left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import Criticality, JobStatus, TaskStatus
from helixcode.store.base import DONE, event, unfinished
from helixcode.store.claims import ClaimOps
from helixcode.store.tables import jobs, task_dependencies, tasks

__all__ = ["BROKEN", "PropagationOps"]

S = TaskStatus
BROKEN = [S.FAILED.value, S.UPSTREAM_FAILED.value, S.CANCELLED.value]


class PropagationOps(ClaimOps):
    """Propagation through the task graph, inside the caller's transaction."""

    # -- graph propagation ----------------------------------------------------------------------

    async def _after_done(
        self, conn: AsyncConnection, job_id: str, done: Sequence[int], now: float, *, propagate: bool = True
    ) -> None:
        """Tasks in ``done`` succeeded or were skipped: unblock dependents, finish split parents.
        ``propagate=False`` says none of them has dependents or a parent (the caller looked)."""
        while done and propagate:
            await self._release_dependents(conn, job_id, done, now)
            done = await self._finish_parents(conn, job_id, done, now)
        await self._finish_job_if_done(conn, job_id, now)

    async def _release_dependents(
        self, conn: AsyncConnection, job_id: str, done: Sequence[int], now: float
    ) -> None:
        deps = task_dependencies
        waiting = sa.select(deps.c.task_id).where(deps.c.depends_on_id.in_(done))
        satisfied = (
            sa.select(sa.func.count())
            .select_from(deps)
            .where(deps.c.task_id == tasks.c.id, deps.c.depends_on_id.in_(done))
            .scalar_subquery()
        )
        await conn.execute(
            tasks.update()
            .where(tasks.c.id.in_(waiting))
            .values(pending_deps=tasks.c.pending_deps - satisfied)
        )
        ready = (
            await conn.execute(
                tasks.update()
                .where(tasks.c.id.in_(waiting), tasks.c.pending_deps <= 0, tasks.c.status == S.BLOCKED.value)
                .values(status=S.READY.value, ready_at=now)
                .returning(tasks.c.id)
            )
        ).scalars()
        await self._events(conn, [event(job_id, "ready", now, task_id=t) for t in ready])

    @staticmethod
    async def _parents_of(conn: AsyncConnection, children: Sequence[int]) -> list[int]:
        """The split parents (or planners) of these tasks, each once."""
        found = await conn.execute(
            sa.select(tasks.c.parent_id)
            .where(tasks.c.id.in_(children), tasks.c.parent_id.is_not(None))
            .distinct()
        )
        return [int(p) for p in found.scalars().all()]

    @staticmethod
    async def _job_graph(conn: AsyncConnection, job_id: str) -> dict[str, list[str]]:
        """The job's dependency graph by task key, for validating additions to it."""
        keys = dict(
            (await conn.execute(sa.select(tasks.c.id, tasks.c.key).where(tasks.c.job_id == job_id))).all()
        )
        graph: dict[str, list[str]] = {k: [] for k in keys.values()}
        edges = await conn.execute(
            sa.select(task_dependencies.c.task_id, task_dependencies.c.depends_on_id).where(
                task_dependencies.c.task_id.in_(list(keys))
            )
        )
        for task_id, dep in edges.all():
            graph[keys[task_id]].append(keys[dep])
        return graph

    async def _finish_parents(
        self, conn: AsyncConnection, job_id: str, children: Sequence[int], now: float
    ) -> list[int]:
        """Split parents whose children are all done succeed; returns them so their dependents move."""
        parent_ids = await self._parents_of(conn, children)
        finished: list[int] = []
        for parent_id in parent_ids:
            # As for jobs: lock the parent before reading its parts, or two parts finishing at once
            # each see the other unfinished and the parent never succeeds.
            await conn.execute(
                sa.select(tasks.c.id).where(tasks.c.id == parent_id).with_for_update(key_share=True)
            )
            rows = (
                await conn.execute(
                    sa.select(tasks.c.status, tasks.c.weight, tasks.c.progress).where(
                        tasks.c.parent_id == parent_id
                    )
                )
            ).all()
            total = sum(w for _, w, _ in rows) or 1.0
            progress = sum(w * (1.0 if s in DONE else p) for s, w, p in rows) / total
            all_done = all(s in DONE for s, _, _ in rows)
            values: dict[str, Any] = {"progress": progress}
            if all_done:
                values.update(status=S.SUCCEEDED.value, finished_at=now, progress=1.0)
            updated = (
                await conn.execute(
                    tasks.update()
                    .where(tasks.c.id == parent_id, tasks.c.status == S.WAITING.value)
                    .values(**values)
                    .returning(tasks.c.id)
                )
            ).first()
            if all_done and updated is not None:
                finished.append(parent_id)
                await self._events(
                    conn, [event(job_id, "succeeded", now, task_id=parent_id, split_parent=True)]
                )
        return finished

    async def _after_failure(
        self, conn: AsyncConnection, job_id: str, failed: Sequence[int], now: float
    ) -> None:
        """Fail dependents (and split parents) downstream; a critical failure pauses the job, whether the
        critical task failed itself or through a child (a split part, a planned subtask)."""
        frontier = list(failed)
        failed_parents: list[int] = []
        while frontier:
            parents = (
                (
                    await conn.execute(
                        tasks.update()
                        .where(
                            tasks.c.id.in_(
                                sa.select(tasks.c.parent_id)
                                .where(tasks.c.id.in_(frontier), tasks.c.parent_id.is_not(None))
                                .scalar_subquery()
                            ),
                            tasks.c.status == S.WAITING.value,
                        )
                        .values(
                            status=S.FAILED.value,
                            finished_at=now,
                            last_error="a part of this split task failed",
                        )
                        .returning(tasks.c.id)
                    )
                )
                .scalars()
                .all()
            )
            downstream = (
                (
                    await conn.execute(
                        tasks.update()
                        .where(
                            tasks.c.id.in_(
                                sa.select(task_dependencies.c.task_id).where(
                                    task_dependencies.c.depends_on_id.in_(frontier)
                                )
                            ),
                            tasks.c.status.in_([S.BLOCKED.value, S.PAUSED.value]),
                        )
                        .values(status=S.UPSTREAM_FAILED.value, finished_at=now)
                        .returning(tasks.c.id)
                    )
                )
                .scalars()
                .all()
            )
            await self._events(
                conn,
                [event(job_id, "failed", now, task_id=p, split_parent=True) for p in parents]
                + [event(job_id, "upstream_failed", now, task_id=t) for t in downstream],
            )
            failed_parents += parents
            frontier = [*parents, *downstream]
        critical = (
            await conn.execute(
                sa.select(tasks.c.key, tasks.c.last_error)
                .where(
                    tasks.c.id.in_([*failed, *failed_parents]),
                    tasks.c.criticality == Criticality.CRITICAL.rank,
                )
                .order_by(tasks.c.id)
            )
        ).first()
        if critical is not None:
            reason = f"critical task '{critical.key}' failed: {(critical.last_error or '')[:500]}"
            paused = await conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
                .values(status=JobStatus.PAUSED.value, pause_reason=reason, updated_at=now)
            )
            if paused.rowcount:
                await self._events(conn, [event(job_id, "paused", now, reason=reason)])
                return
        await self._finish_job_if_done(conn, job_id, now)

    async def _finish_job_if_done(self, conn: AsyncConnection, job_id: str, now: float) -> None:
        """End the job if nothing in it is left to do. On PostgreSQL two transactions finishing a job's
        last two tasks at once each still see the other's task running and neither ends the job;
        rather than serialise every completion of a job on its row, maintenance (``_finish_idle_jobs``)
        ends such jobs on its next pass."""
        still_open = (
            await conn.execute(
                sa.select(tasks.c.id).where(tasks.c.job_id == job_id, unfinished(tasks.c.status)).limit(1)
            )
        ).first()
        if still_open is not None:
            return
        broken = (
            await conn.execute(
                sa.select(tasks.c.id).where(tasks.c.job_id == job_id, tasks.c.status.in_(BROKEN)).limit(1)
            )
        ).first()
        outcome = JobStatus.FAILED if broken is not None else JobStatus.SUCCEEDED
        done = await conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id, jobs.c.status == JobStatus.RUNNING.value)
            .values(status=outcome.value, finished_at=now, updated_at=now)
        )
        if done.rowcount:
            await self._events(conn, [event(job_id, outcome.value, now)])
