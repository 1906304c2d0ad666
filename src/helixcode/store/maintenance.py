"""Maintenance: one pass over the fleet and the queue, run by the reaper's leader (and by a worker's last
pass before it exits), its steps in one explicit ordered list (``MaintenanceOps._steps``).

The order matters: silent workers are called lost first, which expires their leases, so the next step
requeues their tasks in the same pass; due retries become ready before ageing ranks the ready tasks;
idle jobs end after every step that can finish a task; capacity is judged after the lost workers are
gone from it; heartbeat samples are pruned last.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import Criticality, JobStatus, TaskStatus
from helixcode.domain.models import Maintenance
from helixcode.domain.notify import Notice, iso_time
from helixcode.domain.ordering import CRIT_LEVELS, TOP_PRIORITY
from helixcode.store.base import event, status_is, unfinished
from helixcode.store.leases import LEASE_CLEARED
from helixcode.store.tables import jobs, tasks, worker_heartbeats, workers
from helixcode.store.workers import LIVE, WorkerOps

__all__ = ["MAINTENANCE_LOCK_ID", "MaintenanceOps"]

S = TaskStatus
#: Arbitrary constant naming the maintenance lock among PostgreSQL advisory locks.
MAINTENANCE_LOCK_ID = 0x48454C4901

#: A step: given the pass's transaction and its clock, do one thing and count it (``Maintenance``'s fields).
Step = Callable[[AsyncConnection, float], Awaitable[dict[str, Any]]]


class MaintenanceOps(WorkerOps):
    async def maintain(self, *, wait: bool = False) -> Maintenance:
        """One maintenance pass in one transaction. Safe to call from anywhere: on PostgreSQL only one
        caller at a time does the work (an advisory lock) and the rest skip (the reaper is the caller).
        ``wait``: queue behind a pass in progress instead of skipping. A worker's last pass before it
        exits must: a pass that began before that worker's last completion committed cannot end the
        job it completed, and with no worker left nothing else would."""
        async with self._write() as conn:
            if self.dialect == "postgresql":
                if wait:
                    await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(MAINTENANCE_LOCK_ID)))
                elif not (
                    await conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(MAINTENANCE_LOCK_ID)))
                ).scalar_one():
                    return Maintenance()
            now = await self._now(conn)
            counts: dict[str, Any] = {}
            for step in self._steps():
                counts.update(await step(conn, now))
            return Maintenance(**counts)

    def _steps(self) -> Sequence[Step]:
        """The pass, in order (the module's docstring says why this order)."""
        return (
            self._lose_silent_workers,
            self._requeue_expired_leases,
            self._ready_due_retries,
            self._age_ready_tasks,
            self._finish_idle_jobs,
            self._degrade_capacity,
            self._prune_heartbeats,
        )

    async def _lose_silent_workers(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """Workers silent for ``lost_after`` are lost; their leases expire now, so the next step
        requeues their tasks at once (and ``worker.lost`` is notified, naming them)."""
        lost = (
            await conn.execute(
                workers.update()
                .where(
                    workers.c.status.in_(LIVE),
                    workers.c.last_heartbeat_at < now - self.settings.workers.lost_after,
                )
                .values(status="lost")
                .returning(workers.c.id, workers.c.name, workers.c.host, workers.c.last_heartbeat_at)
            )
        ).all()
        if lost:
            orphaned = (
                await conn.execute(
                    tasks.update()
                    .where(status_is(S.RUNNING), tasks.c.lease_owner.in_([w.id for w in lost]))
                    .values(lease_expires_at=now - 1.0)
                    .returning(tasks.c.id, tasks.c.job_id, tasks.c.lease_owner)
                )
            ).all()
            if self.settings.notify:
                await self._notify(conn, [_lost(w, orphaned, now) for w in lost])
        return {"workers_lost": len(lost)}

    async def _requeue_expired_leases(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """Expired leases go back to ready; a task that lost ``max_lease_losses`` of them fails (one
        that kills its worker must not loop forever)."""
        expired = [status_is(S.RUNNING), tasks.c.lease_expires_at < now]
        returned = (tasks.c.id, tasks.c.job_id, tasks.c.attempts)
        gave_up = (
            await conn.execute(
                tasks.update()
                .where(*expired, tasks.c.lease_losses + 1 >= self.settings.tasks.max_lease_losses)
                .values(
                    status=S.FAILED.value,
                    lease_losses=tasks.c.lease_losses + 1,
                    finished_at=now,
                    last_error="lost its worker too many times",
                    **LEASE_CLEARED,
                )
                .returning(*returned)
            )
        ).all()
        requeued = (
            await conn.execute(
                tasks.update()
                .where(*expired)
                .values(
                    status=S.READY.value, lease_losses=tasks.c.lease_losses + 1, ready_at=now, **LEASE_CLEARED
                )
                .returning(*returned)
            )
        ).all()
        # The RETURNING clause sees new values, so lease_owner is already cleared: name no worker.
        await self._events(
            conn,
            [event(j, "requeued", now, task_id=t, attempt=a, reason="lease expired") for t, j, a in requeued]
            + [
                event(j, "failed", now, task_id=t, attempt=a, reason="lease lost too often")
                for t, j, a in gave_up
            ],
        )
        for job_id in sorted({j for _, j, _ in gave_up}):
            await self._after_failure(conn, job_id, [t for t, j, _ in gave_up if j == job_id], now)
        return {"requeued": len(requeued), "lost_failed": len(gave_up)}

    async def _ready_due_retries(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """Retries whose backoff has passed become ready."""
        due = (
            await conn.execute(
                tasks.update()
                .where(status_is(S.RETRYING), tasks.c.next_attempt_at <= now)
                .values(status=S.READY.value, ready_at=now, next_attempt_at=None)
                .returning(tasks.c.id, tasks.c.job_id)
            )
        ).all()
        await self._events(conn, [event(j, "ready", now, task_id=t) for t, j in due])
        return {"retries_ready": len(due)}

    async def _age_ready_tasks(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """A task ready for ``aging_seconds`` per rank moves up one priority rank, so nothing starves."""
        cfg = self.settings.tasks
        aged = await conn.execute(
            tasks.update()
            .where(
                status_is(S.READY),
                tasks.c.claim_rank >= CRIT_LEVELS,
                tasks.c.ready_at
                <= now
                - cfg.aging_seconds
                * ((TOP_PRIORITY - tasks.c.priority) - tasks.c.claim_rank // CRIT_LEVELS + 1),
            )
            .values(claim_rank=tasks.c.claim_rank - CRIT_LEVELS)
        )
        return {"aged": aged.rowcount or 0}

    async def _finish_idle_jobs(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """Running jobs whose tasks are all finished (a completion race left them open) end now."""
        open_tasks = sa.exists().where(tasks.c.job_id == jobs.c.id, unfinished(tasks.c.status))
        idle = (
            (
                await conn.execute(
                    sa.select(jobs.c.id).where(jobs.c.status == JobStatus.RUNNING.value, ~open_tasks)
                )
            )
            .scalars()
            .all()
        )
        for job_id in idle:
            await self._finish_job_if_done(conn, job_id, now)
        return {"jobs_finished": len(idle)}

    async def _degrade_capacity(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """Below the capacity floor, ready tasks under ``degrade_below`` wait; above it they return."""
        cfg = self.settings.workers
        if cfg.capacity_floor <= 0:
            return {}
        floor_rank = Criticality(cfg.degrade_below).rank
        degraded = await self._capacity(conn, now) < cfg.capacity_floor
        if degraded:
            changed = (
                await conn.execute(
                    tasks.update()
                    .where(tasks.c.status == S.READY.value, tasks.c.criticality < floor_rank)
                    .values(status=S.PAUSED.value, paused_by="capacity")
                    .returning(tasks.c.id, tasks.c.job_id)
                )
            ).all()
            kind, reason = "paused", "capacity below the floor"
        else:
            changed = (
                await conn.execute(
                    tasks.update()
                    .where(tasks.c.status == S.PAUSED.value, tasks.c.paused_by == "capacity")
                    .values(status=S.READY.value, paused_by=None, ready_at=now)
                    .returning(tasks.c.id, tasks.c.job_id)
                )
            ).all()
            kind, reason = "ready", "capacity restored"
        await self._events(conn, [event(j, kind, now, task_id=t, reason=reason) for t, j in changed])
        return {
            "degraded": degraded,
            "paused_for_capacity" if degraded else "resumed_after_capacity": len(changed),
        }

    async def _prune_heartbeats(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """Resource samples older than ``heartbeat_retention`` go (the plots need only recent ones)."""
        await conn.execute(
            worker_heartbeats.delete().where(
                worker_heartbeats.c.at < now - self.settings.workers.heartbeat_retention
            )
        )
        return {}


def _lost(worker: sa.Row[Any], orphaned: Sequence[sa.Row[Any]], now: float) -> Notice:
    """The ``worker.lost`` notice of one worker, naming the tasks it was running (they are requeued)."""
    return Notice(
        "worker.lost",
        now,
        worker={
            "id": worker.id,
            "name": worker.name,
            "host": worker.host,
            "last_heartbeat_at": iso_time(worker.last_heartbeat_at),
            "tasks": [{"id": t.id, "job_id": t.job_id} for t in orphaned if t.lease_owner == worker.id],
        },
    )
