"""What a person (or the planner) does to a job: pause, resume with retry/skip, cancel, split a task."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.graph import validate_graph
from helixcode.domain.splitting import Part, part_description
from helixcode.domain.states import check_transition
from helixcode.errors import NotFound, SchedulerError
from helixcode.store.base import event, unfinished
from helixcode.store.propagation import BROKEN, PropagationOps
from helixcode.store.rows import JOB_COLUMNS
from helixcode.store.tables import jobs, task_dependencies, tasks

__all__ = ["ControlOps"]

S = TaskStatus


class ControlOps(PropagationOps):
    """Job-level control. Each method is one transaction and writes its events."""

    async def _job_row(self, conn: AsyncConnection, job_id: str) -> sa.RowMapping:
        row = (await conn.execute(sa.select(*JOB_COLUMNS).where(jobs.c.id == job_id))).mappings().first()
        if row is None:
            raise NotFound(f"no job '{job_id}'")
        return row

    async def _task_row(self, conn: AsyncConnection, job_id: str, key: str) -> sa.RowMapping:
        row = (
            (await conn.execute(sa.select(tasks).where(tasks.c.job_id == job_id, tasks.c.key == key)))
            .mappings()
            .first()
        )
        if row is None:
            raise NotFound(f"job {job_id} has no task '{key}'")
        return row

    async def pause_job(self, job_id: str, reason: str = "paused by request") -> None:
        """No task of the job is claimed until it is resumed; running tasks finish. A claim already in
        flight when the pause commits may still complete (it decided before the pause existed)."""
        async with self._write() as conn:
            now = await self._now(conn)
            job = await self._job_row(conn, job_id)
            if job["status"] == JobStatus.PAUSED.value:
                return
            if job["status"] != JobStatus.RUNNING.value:
                raise SchedulerError(f"job {job_id} is {job['status']}; only a running job can be paused")
            await conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(status=JobStatus.PAUSED.value, pause_reason=reason, updated_at=now)
            )
            await self._events(conn, [event(job_id, "paused", now, reason=reason)])

    async def resume_job(
        self,
        job_id: str,
        retry: Sequence[str] = (),
        skip: Sequence[str] = (),
        *,
        raise_cost: float | None = None,
        raise_tokens: int | None = None,
    ) -> None:
        """Resume a paused (or finished-as-failed) job, first retrying or skipping the named tasks, and
        raising its budget by ``raise_cost`` USD / ``raise_tokens`` (a job paused on its budget)."""
        async with self._write() as conn:
            now = await self._now(conn)
            job = await self._job_row(conn, job_id)
            if job["status"] in (JobStatus.CANCELLED.value, JobStatus.SUCCEEDED.value):
                raise SchedulerError(f"job {job_id} is {job['status']}; it cannot be resumed")
            if job["status"] == JobStatus.FAILED.value and not (retry or skip):
                raise SchedulerError(f"job {job_id} failed; resume it with --retry TASK or --skip TASK")
            changed: list[int] = []
            for key in retry:
                changed.append(await self._retry_task(conn, job_id, key, now))
            skipped: list[int] = []
            for key in skip:
                skipped.append(await self._skip_task(conn, job_id, key, now))
            budget: dict[str, Any] = {}
            if raise_cost:
                budget["max_cost"] = sa.func.coalesce(jobs.c.max_cost, 0.0) + raise_cost
            if raise_tokens:
                budget["max_tokens"] = sa.func.coalesce(jobs.c.max_tokens, 0) + raise_tokens
            await conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(
                    status=JobStatus.RUNNING.value,
                    pause_reason=None,
                    finished_at=None,
                    updated_at=now,
                    **budget,
                )
            )
            raised: dict[str, Any] = {"raise_cost": raise_cost} if raise_cost else {}
            if raise_tokens:
                raised["raise_tokens"] = raise_tokens
            await self._events(
                conn, [event(job_id, "resumed", now, retry=list(retry), skip=list(skip), **raised)]
            )
            await self._unfail_downstream(conn, job_id, [*changed, *skipped], now)
            if skipped:
                await self._after_done(conn, job_id, skipped, now)
            else:
                await self._finish_job_if_done(conn, job_id, now)

    async def _retry_task(self, conn: AsyncConnection, job_id: str, key: str, now: float) -> int:
        row = await self._task_row(conn, job_id, key)
        if row["status"] not in (S.FAILED.value, S.CANCELLED.value):
            raise SchedulerError(f"task '{key}' is {row['status']}; only a failed task can be retried")
        ready = row["pending_deps"] <= 0
        await conn.execute(
            tasks.update()
            .where(tasks.c.id == row["id"])
            .values(
                status=(S.READY if ready else S.BLOCKED).value,
                failures=0,
                lease_losses=0,
                finished_at=None,
                ready_at=now if ready else None,
            )
        )
        await self._events(conn, [event(job_id, "retried", now, task_id=row["id"], by="request")])
        if ready:
            await self._events(conn, [event(job_id, "ready", now, task_id=row["id"])])
        return int(row["id"])

    async def _skip_task(self, conn: AsyncConnection, job_id: str, key: str, now: float) -> int:
        row = await self._task_row(conn, job_id, key)
        check_transition(S(row["status"]), S.SKIPPED, task=key)
        await conn.execute(
            tasks.update()
            .where(tasks.c.id == row["id"])
            .values(status=S.SKIPPED.value, finished_at=now, lease_owner=None, lease_token=None)
        )
        await self._events(conn, [event(job_id, "skipped", now, task_id=row["id"])])
        return int(row["id"])

    async def _unfail_downstream(
        self, conn: AsyncConnection, job_id: str, roots: Sequence[int], now: float
    ) -> None:
        """Tasks failed only because of ``roots`` go back to waiting on their dependencies."""
        frontier = list(roots)
        while frontier:
            candidates = (
                await conn.execute(
                    sa.select(tasks.c.id, tasks.c.pending_deps, tasks.c.parent_id).where(
                        tasks.c.id.in_(
                            sa.select(task_dependencies.c.task_id).where(
                                task_dependencies.c.depends_on_id.in_(frontier)
                            )
                        ),
                        tasks.c.status == S.UPSTREAM_FAILED.value,
                    )
                )
            ).all()
            revived: list[int] = []
            for task_id, pending, _parent in candidates:
                still_broken = (
                    await conn.execute(
                        sa.select(tasks.c.id)
                        .join(task_dependencies, task_dependencies.c.depends_on_id == tasks.c.id)
                        .where(task_dependencies.c.task_id == task_id, tasks.c.status.in_(BROKEN))
                        .limit(1)
                    )
                ).first()
                if still_broken is not None:
                    continue
                ready = pending <= 0
                await conn.execute(
                    tasks.update()
                    .where(tasks.c.id == task_id)
                    .values(
                        status=(S.READY if ready else S.BLOCKED).value,
                        finished_at=None,
                        ready_at=now if ready else None,
                    )
                )
                await self._events(
                    conn, [event(job_id, "ready" if ready else "blocked", now, task_id=task_id)]
                )
                revived.append(task_id)
            frontier = revived + await self._unfail_parents(conn, job_id, frontier, now)

    async def _unfail_parents(
        self, conn: AsyncConnection, job_id: str, children: Sequence[int], now: float
    ) -> list[int]:
        """Split parents failed only by parts that are now retried, skipped or revived wait again."""
        parent_ids = await self._parents_of(conn, children)
        revived: list[int] = []
        for parent_id in parent_ids:
            broken = (
                await conn.execute(
                    sa.select(tasks.c.id)
                    .where(tasks.c.parent_id == parent_id, tasks.c.status.in_(BROKEN))
                    .limit(1)
                )
            ).first()
            if broken is not None:
                continue
            updated = await conn.execute(
                tasks.update()
                .where(tasks.c.id == parent_id, tasks.c.status == S.FAILED.value)
                .values(status=S.WAITING.value, finished_at=None, last_error=None)
            )
            if updated.rowcount:
                await self._events(conn, [event(job_id, "waiting", now, task_id=parent_id)])
                revived.append(parent_id)
        return revived

    async def cancel_job(self, job_id: str) -> int:
        """Cancel every unfinished task; running workers see it on their next lease renewal and stop."""
        async with self._write() as conn:
            now = await self._now(conn)
            job = await self._job_row(conn, job_id)
            if JobStatus(job["status"]).terminal:
                raise SchedulerError(f"job {job_id} is already {job['status']}")
            # Every task it cancels gets its own event (what it was, and who ran it if it was running).
            open_tasks = (
                await conn.execute(
                    sa.select(tasks.c.id, tasks.c.status, tasks.c.attempts, tasks.c.lease_owner).where(
                        tasks.c.job_id == job_id, unfinished(tasks.c.status)
                    )
                )
            ).all()
            result = await conn.execute(
                tasks.update()
                .where(tasks.c.job_id == job_id, unfinished(tasks.c.status))
                .values(
                    status=S.CANCELLED.value,
                    finished_at=now,
                    lease_owner=None,
                    lease_token=None,
                    lease_expires_at=None,
                )
            )
            await conn.execute(
                jobs.update()
                .where(jobs.c.id == job_id)
                .values(status=JobStatus.CANCELLED.value, finished_at=now, updated_at=now)
            )
            await self._events(
                conn,
                [
                    event(job_id, "cancelled", now, task_id=t, attempt=a, worker_id=w, was=was)
                    for t, was, a, w in open_tasks
                ]
                + [event(job_id, "cancelled", now, tasks=result.rowcount)],
            )
            return int(result.rowcount or 0)

    async def split_task(self, job_id: str, key: str, parts: Sequence[Part]) -> list[str]:
        """Replace a not-yet-started task by one child per part; the parent waits for all of them.
        Each part does only its items: its run carries them (``RunModel.for_items``: the agent's
        ``files``, a test run's arguments, ``HELIX_ITEMS``) and its description lists them."""
        from helixcode.domain.kinds import load_run  # lazy: the run models (pydantic) cost start-up

        if not parts:
            raise SchedulerError("split: no parts")
        async with self._write() as conn:
            now = await self._now(conn)
            parent = await self._task_row(conn, job_id, key)
            if parent["status"] not in (S.READY.value, S.BLOCKED.value):
                raise SchedulerError(
                    f"task '{key}' is {parent['status']}; only a task not yet started can be split"
                )
            existing = dict(
                (await conn.execute(sa.select(tasks.c.key, tasks.c.id).where(tasks.c.job_id == job_id))).all()
            )
            dep_ids = (
                (
                    await conn.execute(
                        sa.select(task_dependencies.c.depends_on_id).where(
                            task_dependencies.c.task_id == parent["id"]
                        )
                    )
                )
                .scalars()
                .all()
            )
            child_keys = [f"{key}.{i + 1}" for i in range(len(parts))]
            graph = await self._job_graph(conn, job_id)
            for child in child_keys:
                if child in graph:
                    raise SchedulerError(f"split: task '{child}' already exists in job {job_id}")
                graph[child] = [k for k, i in existing.items() if i in dep_ids]
            validate_graph(graph)
            run = load_run(parent["run"], job=job_id, task=key)
            ready = parent["pending_deps"] <= 0
            rows = [
                {
                    **{c: parent[c] for c in _COPIED},
                    "key": child,
                    "parent_id": parent["id"],
                    "title": f"{parent['title']} ({i + 1}/{len(parts)})"[:200],
                    "description": part_description(parent["description"], part.items),
                    "run": run.for_items(part.items).model_dump(mode="json"),
                    "weight": part.weight,
                    "status": (S.READY if ready else S.BLOCKED).value,
                    "created_at": now,
                    "ready_at": now if ready else None,
                }
                for i, (child, part) in enumerate(zip(child_keys, parts, strict=True))
            ]
            ids = (
                (await conn.execute(tasks.insert().returning(tasks.c.id, sort_by_parameter_order=True), rows))
                .scalars()
                .all()
            )
            if dep_ids:
                await conn.execute(
                    task_dependencies.insert(),
                    [{"task_id": c, "depends_on_id": d} for c in ids for d in dep_ids],
                )
            await conn.execute(
                tasks.update().where(tasks.c.id == parent["id"]).values(status=S.WAITING.value, ready_at=None)
            )
            await self._events(
                conn,
                [event(job_id, "split", now, task_id=parent["id"], parts=len(parts), children=child_keys)]
                + ([event(job_id, "ready", now, task_id=c) for c in ids] if ready else []),
            )
        return child_keys


_COPIED: tuple[str, ...] = (
    "job_id",
    "type",
    "priority",
    "criticality",
    "claim_rank",
    "chain_rank",
    "requires",
    "pending_deps",
    "max_attempts",
    "timeout",
    "backoff_base",
    "backoff_cap",
)
