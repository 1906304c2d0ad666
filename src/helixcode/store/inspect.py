"""Read-only views the API and MCP edges need beyond the job views: attempts and one task's events."""

from __future__ import annotations

import sqlalchemy as sa

from helixcode.domain.models import Event
from helixcode.domain.records import AttemptRecord
from helixcode.store.base import StoreBase
from helixcode.store.rows import event_from_row
from helixcode.store.tables import events, results, tasks

__all__ = ["InspectOps"]


class InspectOps(StoreBase):
    async def list_attempts(self, task_id: int) -> list[AttemptRecord]:
        stmt = sa.select(results).where(results.c.task_id == task_id).order_by(results.c.attempt)
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [
            AttemptRecord(
                attempt=r["attempt"],
                outcome=r["outcome"],
                worker_id=r["worker_id"],
                error=r["error"],
                output=dict(r["output"] or {}),
                started_at=r["started_at"],
                finished_at=r["finished_at"],
            )
            for r in rows
        ]

    async def task_events(self, task_id: int, after_id: int = 0, limit: int = 1000) -> list[Event]:
        """One task's events, oldest first."""
        stmt = (
            sa.select(events, tasks.c.key.label("task_key"))
            .select_from(events.join(tasks, tasks.c.id == events.c.task_id))
            .where(events.c.task_id == task_id, events.c.id > after_id)
            .order_by(events.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        return [event_from_row(r, r["task_key"]) for r in rows]
