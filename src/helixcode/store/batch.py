"""Batched acknowledgements: many completions in one transaction.

A worker that claims tasks ten at a time should not pay one transaction per success. ``complete_many``
records each success exactly as ``complete`` does (the same fencing, result rows, ``succeeded`` events and
readiness release) but for a whole batch at once; a stale token refuses only its own item.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from helixcode.domain.enums import TaskStatus
from helixcode.store.base import event
from helixcode.store.queue import _LEASE_CLEARED, QueueOps
from helixcode.store.tables import results, task_dependencies, tasks

__all__ = ["BatchOps", "Completion"]

S = TaskStatus

#: ``(task_id, lease_token, output)``: one success to record.
Completion = tuple[int, str, Mapping[str, Any] | None]


class BatchOps(QueueOps):
    async def complete_many(self, items: Sequence[Completion]) -> list[int]:
        """Record these successes in one transaction; returns the ids refused because their lease is
        gone (the others are recorded). Dependents are released per job, as ``complete`` does."""
        if not items:
            return []
        wanted = {task_id: (token, output) for task_id, token, output in items}
        held = sa.tuple_(tasks.c.id, tasks.c.lease_token).in_([(t, tok) for t, (tok, _) in wanted.items()])
        deps = task_dependencies
        select = sa.select(
            tasks.c.id,
            tasks.c.job_id,
            tasks.c.attempts,
            tasks.c.lease_owner,
            tasks.c.started_at,
            tasks.c.parent_id,
            sa.exists().where(deps.c.depends_on_id == tasks.c.id).label("dependents"),
        ).where(held, tasks.c.status == S.RUNNING.value)
        if self.dialect == "postgresql":
            select = select.with_for_update()  # the rows stay ours until the update below
        async with self._write() as conn:
            now = await self._now(conn)
            rows = (await conn.execute(select)).mappings().all()
            if not rows:
                return list(wanted)
            done = [r["id"] for r in rows]
            await conn.execute(
                tasks.update()
                .where(tasks.c.id.in_(done))
                .values(
                    status=S.SUCCEEDED.value, finished_at=now, progress=1.0, last_error=None, **_LEASE_CLEARED
                )
            )
            await conn.execute(
                results.insert(),
                [
                    {
                        "task_id": r["id"],
                        "attempt": r["attempts"],
                        "worker_id": r["lease_owner"],
                        "outcome": "succeeded",
                        "error": None,
                        "output": dict(wanted[r["id"]][1] or {}),
                        "started_at": r["started_at"],
                        "finished_at": now,
                    }
                    for r in rows
                ],
            )
            await self._events(
                conn,
                [
                    event(
                        r["job_id"],
                        "succeeded",
                        now,
                        task_id=r["id"],
                        attempt=r["attempts"],
                        worker_id=r["lease_owner"],
                        duration=round(now - (r["started_at"] or now), 3),
                    )
                    for r in rows
                ],
            )
            by_job: dict[str, list[sa.RowMapping]] = {}
            for r in rows:
                by_job.setdefault(r["job_id"], []).append(r)
            for job_id, done_rows in sorted(by_job.items()):
                propagate = any(r["dependents"] or r["parent_id"] is not None for r in done_rows)
                await self._after_done(conn, job_id, [r["id"] for r in done_rows], now, propagate=propagate)
        return [t for t in wanted if t not in set(done)]
