"""The notifications outbox: rows queued in the transaction of the event they tell of, claimed by a
sender with a lease, marked delivered or retried with backoff.

Queueing happens where every event is written (``StoreBase._events`` calls ``_notify``), so no job
outcome, pause or budget stop can be missed, and the row commits or rolls back with the change itself.
With no ``[notify.*]`` target configured nothing here runs. A sender (``worker.notify.Notifier``)
claims due rows by moving ``next_attempt_at`` one lease ahead and counting the attempt: one that dies
mid-send leaves its rows to be claimed again when the lease runs out (delivery is at least once; the
payload's ``id`` lets receivers de-duplicate). Claims skip rows another sender holds
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer at a time).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.enums import TaskStatus
from helixcode.domain.notify import Delivery, Notice, NotificationRecord, iso_time, wanted
from helixcode.store.base import StoreBase
from helixcode.store.database import db_now
from helixcode.store.tables import jobs, notifications, tasks

__all__ = ["FAILED_TASKS_SHOWN", "OutboxOps"]

#: Failed tasks a job's payload names (with their errors); the counts cover the rest.
FAILED_TASKS_SHOWN = 5
PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_n = notifications.c


class OutboxOps(StoreBase):
    async def _notify(self, conn: AsyncConnection, notices: Sequence[Notice]) -> None:
        """Queue one row per enabled target that wants each notice, due at once, in the caller's
        transaction. The payload is built now, so it describes the job as the event left it."""
        targets = [(name, t.events) for name, t in self.settings.notify.items() if t.enabled]
        rows: list[dict[str, Any]] = []
        for notice in notices:
            names = [name for name, events in targets if wanted(notice.kind, events)]
            if not names:
                continue
            payload = await self._payload(conn, notice)
            rows += [
                {
                    "target": name,
                    "kind": notice.kind,
                    "job_id": notice.job_id,
                    "payload": payload,
                    "status": PENDING,
                    "attempts": 0,
                    "next_attempt_at": notice.at,
                    "created_at": notice.at,
                }
                for name in names
            ]
        if rows:
            await conn.execute(notifications.insert(), rows)

    async def _payload(self, conn: AsyncConnection, notice: Notice) -> dict[str, Any]:
        payload: dict[str, Any] = {"event": notice.kind, "at": iso_time(notice.at)}
        if notice.job_id is not None:
            payload["job"] = await _job_snapshot(conn, notice.job_id)
        if notice.worker is not None:
            payload["worker"] = dict(notice.worker)
        payload["details"] = dict(notice.details)
        return payload

    # -- the sender's side ------------------------------------------------------------------------

    async def claim_notifications(self, targets: Sequence[str], limit: int, lease: float) -> list[Delivery]:
        """Take up to ``limit`` due rows of these targets for ``lease`` seconds, oldest due first."""
        if not targets:
            return []
        due = (
            sa.select(_n.id)
            .where(_n.status == PENDING, _n.next_attempt_at <= db_now(), _n.target.in_(list(targets)))
            .order_by(_n.next_attempt_at)
            .limit(limit)
        )
        if self.dialect == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (
            notifications.update()
            .where(_n.id.in_(due.scalar_subquery()))
            .values(attempts=_n.attempts + 1, next_attempt_at=db_now() + lease)
            .returning(_n.id, _n.target, _n.kind, _n.payload, _n.attempts)
        )
        async with self._write() as conn:
            rows = (await conn.execute(stmt)).all()
        return sorted(
            (Delivery(int(r.id), r.target, r.kind, dict(r.payload), int(r.attempts)) for r in rows),
            key=lambda d: d.id,
        )

    async def mark_delivered(self, delivery: Delivery) -> bool:
        """Record a success; False when the row is no longer this attempt's (another sender took it
        over after this one's lease ran out)."""
        return await self._mark(delivery, status=DELIVERED, delivered_at=db_now(), last_error=None)

    async def mark_undelivered(self, delivery: Delivery, error: str, retry_in: float | None) -> bool:
        """Record a failed attempt: due again in ``retry_in`` seconds, or, with None, failed for good."""
        values: dict[str, Any] = {"last_error": error[:2000]}
        if retry_in is None:
            values["status"] = FAILED
        else:
            values["next_attempt_at"] = db_now() + retry_in
        return await self._mark(delivery, **values)

    async def _mark(self, delivery: Delivery, **values: Any) -> bool:
        async with self._write() as conn:
            done = await conn.execute(
                notifications.update()
                .where(_n.id == delivery.id, _n.attempts == delivery.attempt, _n.status == PENDING)
                .values(**values)
            )
        return bool(done.rowcount)

    async def list_notifications(
        self, *, status: str | None = None, job_id: str | None = None, limit: int = 50
    ) -> list[NotificationRecord]:
        """Outbox rows, newest first."""
        stmt = sa.select(notifications).order_by(_n.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(_n.status == status)
        if job_id is not None:
            stmt = stmt.where(_n.job_id == job_id)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [
            NotificationRecord(
                id=int(r["id"]),
                target=r["target"],
                kind=r["kind"],
                job_id=r["job_id"],
                status=r["status"],
                attempts=int(r["attempts"]),
                next_attempt_at=r["next_attempt_at"],
                delivered_at=r["delivered_at"],
                last_error=r["last_error"],
                created_at=r["created_at"],
            )
            for r in rows
        ]


async def _job_snapshot(conn: AsyncConnection, job_id: str) -> dict[str, Any]:
    """The job as a notification describes it: name, status, its tasks by status, the first failed
    tasks with their errors, and when it started and ended."""
    job = (
        (
            await conn.execute(
                sa.select(
                    jobs.c.id,
                    jobs.c.name,
                    jobs.c.status,
                    jobs.c.pause_reason,
                    jobs.c.created_at,
                    jobs.c.finished_at,
                ).where(jobs.c.id == job_id)
            )
        )
        .mappings()
        .first()
    )
    if job is None:
        return {"id": job_id}
    counts = await conn.execute(
        sa.select(tasks.c.status, sa.func.count()).where(tasks.c.job_id == job_id).group_by(tasks.c.status)
    )
    failed = await conn.execute(
        sa.select(tasks.c.key, tasks.c.title, tasks.c.last_error)
        .where(tasks.c.job_id == job_id, tasks.c.status == TaskStatus.FAILED.value)
        .order_by(tasks.c.id)
        .limit(FAILED_TASKS_SHOWN)
    )
    return {
        "id": job["id"],
        "name": job["name"],
        "status": job["status"],
        "pause_reason": job["pause_reason"],
        "created_at": iso_time(job["created_at"]),
        "finished_at": iso_time(job["finished_at"]),
        "tasks": {status: int(n) for status, n in counts.all()},
        "failed_tasks": [
            {"key": key, "title": title, "error": (error or "")[:1000]} for key, title, error in failed.all()
        ],
    }
