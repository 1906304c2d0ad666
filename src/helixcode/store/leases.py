"""Leases: what a worker writes while it holds one, each write fenced by its token.

Every write a worker makes names its lease token and runs as ``UPDATE ... WHERE lease_token = :token``;
no row updated means the lease is gone and the write is refused with ``LeaseLost`` (fencing), so a worker
that was presumed dead can never overwrite its successor. Here: renewal, the check before a side effect
outside the database, progress and checkpoints. Claims (how a lease starts) are in ``claims``, outcomes
(how it ends) in ``outcomes``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.models import Checkpoint, LeaseState
from helixcode.errors import LeaseLost, SchedulerError
from helixcode.store.base import event, task_event
from helixcode.store.database import db_now
from helixcode.store.propagation import PropagationOps
from helixcode.store.rows import checkpoint_from_row
from helixcode.store.tables import checkpoints, jobs, tasks

__all__ = ["LEASE_CLEARED", "CheckpointTooLarge", "LeaseOps"]

S = TaskStatus

#: The values that end a lease (a success keeps ``lease_owner`` as the record of who ran it).
LEASE_CLEARED: dict[str, Any] = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}


class CheckpointTooLarge(SchedulerError):
    """A checkpoint over ``tasks.checkpoint_max_bytes``."""


class LeaseOps(PropagationOps):
    """Writes under a lease. Decisions (backoff, order, splitting) come from ``helixcode.domain``."""

    async def renew(self, worker_id: str, leases: Mapping[int, str]) -> dict[int, LeaseState]:
        """Extend every lease the worker still holds, in one statement; report the others."""
        if not leases:
            return {}
        async with self._write() as conn:
            return await self._renew(conn, [(t, token, worker_id) for t, token in leases.items()])

    async def _renew(
        self, conn: AsyncConnection, leases: Sequence[tuple[int, str, str]]
    ) -> dict[int, LeaseState]:
        """Renew ``(task id, token, owner)`` leases, of one worker or of every worker of a process, in
        one statement: a lease is held while its task runs under that token and owner."""
        if not leases:
            return {}
        stmt = (
            tasks.update()
            .where(
                sa.tuple_(tasks.c.id, tasks.c.lease_token, tasks.c.lease_owner).in_(list(leases)),
                tasks.c.status == S.RUNNING.value,
            )
            .values(lease_expires_at=db_now() + self.settings.tasks.lease_ttl)
            .returning(tasks.c.id)
        )
        held = set((await conn.execute(stmt)).scalars().all())
        missing = [task_id for task_id, _token, _owner in leases if task_id not in held]
        cancelled: set[int] = set()
        if missing:
            rows = await conn.execute(
                sa.select(tasks.c.id)
                .join(jobs, jobs.c.id == tasks.c.job_id)
                .where(
                    tasks.c.id.in_(missing),
                    sa.or_(tasks.c.status == S.CANCELLED.value, jobs.c.status == JobStatus.CANCELLED.value),
                )
            )
            cancelled = set(rows.scalars().all())
        return {
            task_id: LeaseState.HELD
            if task_id in held
            else LeaseState.CANCELLED
            if task_id in cancelled
            else LeaseState.LOST
            for task_id, _token, _owner in leases
        }

    async def _fenced(self, conn: AsyncConnection, task_id: int, token: str, **values: Any) -> sa.RowMapping:
        """Update a running task only if ``token`` is its current lease token; else ``LeaseLost``."""
        stmt = (
            tasks.update()
            .where(tasks.c.id == task_id, tasks.c.lease_token == token, tasks.c.status == S.RUNNING.value)
            .values(**(values or {"lease_token": tasks.c.lease_token}))
            .returning(*tasks.c)
        )
        row = (await conn.execute(stmt)).mappings().first()
        if row is None:
            raise LeaseLost(task_id, token)
        return row

    async def confirm_lease(self, task_id: int, token: str) -> float:
        """The fenced check before a side effect outside the database (a git landing): renew the
        lease for a full TTL if ``token`` still holds it, and return the new expiry (database clock);
        ``LeaseLost`` otherwise. Renewing, not just reading, gives the side effect a whole TTL."""
        async with self._write() as conn:
            row = await self._fenced(
                conn, task_id, token, lease_expires_at=db_now() + self.settings.tasks.lease_ttl
            )
            return float(row["lease_expires_at"])

    async def record_refusal(
        self, task_id: int, token: str, kind: str, attempt: int | None, worker_id: str | None, **details: Any
    ) -> None:
        """Log that an attempt which lost its lease was refused a side effect (``landing_refused``):
        an append to the task's events, deliberately unfenced, since the writer holds no lease."""
        async with self._write() as conn:
            now = await self._now(conn)
            job_id = (await conn.execute(sa.select(tasks.c.job_id).where(tasks.c.id == task_id))).scalar_one()
            await self._events(
                conn,
                [event(job_id, kind, now, task_id=task_id, attempt=attempt, worker_id=worker_id, **details)],
            )

    async def report_progress(
        self, task_id: int, token: str, fraction: float, message: str | None = None
    ) -> None:
        fraction = min(1.0, max(0.0, fraction))
        async with self._write() as conn:
            now = await self._now(conn)
            row = await self._fenced(conn, task_id, token, progress=fraction, progress_message=message)
            await self._events(
                conn, [task_event(row, "progress", now, fraction=round(fraction, 4), message=message)]
            )

    async def save_checkpoint(self, task_id: int, token: str, name: str, data: Any) -> None:
        """Append a checkpoint for the current attempt and keep only the latest N."""
        encoded = json.dumps(data, separators=(",", ":"))
        limit = self.settings.tasks.checkpoint_max_bytes
        if len(encoded.encode()) > limit:
            raise CheckpointTooLarge(
                f"checkpoint '{name}' is {len(encoded.encode())} bytes; the limit is {limit}"
            )
        keep = self.settings.tasks.checkpoints_kept
        async with self._write() as conn:
            now = await self._now(conn)
            row = await self._fenced(conn, task_id, token)
            await conn.execute(
                checkpoints.insert().values(
                    task_id=task_id,
                    attempt=row["attempts"],
                    worker_id=row["lease_owner"],
                    name=name,
                    data=json.loads(encoded),
                    created_at=now,
                )
            )
            newest = (
                sa.select(checkpoints.c.id)
                .where(checkpoints.c.task_id == task_id)
                .order_by(checkpoints.c.id.desc())
                .limit(keep)
            )
            await conn.execute(
                checkpoints.delete().where(
                    checkpoints.c.task_id == task_id, checkpoints.c.id.not_in(newest.scalar_subquery())
                )
            )
            await self._events(conn, [task_event(row, "checkpoint", now, name=name, bytes=len(encoded))])

    async def latest_checkpoint(self, task_id: int) -> Checkpoint | None:
        async with self._read() as conn:
            return (await self._latest_checkpoints(conn, [task_id])).get(task_id)

    async def list_checkpoints(self, task_id: int) -> list[Checkpoint]:
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    sa.select(checkpoints).where(checkpoints.c.task_id == task_id).order_by(checkpoints.c.id)
                )
            ).mappings()
            return [checkpoint_from_row(r) for r in rows]
