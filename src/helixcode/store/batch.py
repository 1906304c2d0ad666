"""Batched acknowledgements: many completions in one transaction.

A worker that claims tasks ten at a time should not pay one transaction per success. ``complete_many``
records each success exactly as ``complete`` does (the same fencing, result rows, ``succeeded`` events and
readiness release) but for a whole batch at once; a stale token refuses only its own item.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from helixcode.domain.enums import Criticality, TaskStatus
from helixcode.domain.models import Claim
from helixcode.store.base import const, event
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
        parentless = wanted.keys() <= self._parentless
        self._parentless.difference_update(wanted)
        if self.dialect == "postgresql":
            return await self._complete_many_pg(wanted, parentless)
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

    async def complete_many_and_claim(
        self,
        items: Sequence[Completion],
        worker_id: str,
        capabilities: Iterable[str] = (),
        limit: int = 1,
        *,
        min_criticality: Criticality | None = None,
    ) -> tuple[list[int], list[Claim]]:
        """``complete_many``, then ``claim`` up to ``limit`` (the slots the batch frees): the refused ids
        and the new claims. On PostgreSQL, when no item has a split parent, both are one statement, as
        ``complete_and_claim`` is for one task; the claim sees the queue as it was before the batch."""
        wanted = {task_id: (token, output) for task_id, token, output in items}
        if self.dialect != "postgresql" or not items or not wanted.keys() <= self._parentless:
            refused = await self.complete_many(items)
            return refused, await self.claim(worker_id, capabilities, limit, min_criticality=min_criticality)
        self._parentless.difference_update(wanted)
        params = {
            **self._claim_params(worker_id, capabilities, limit, min_criticality),
            "p_items": [
                {"id": t, "token": tok, "output": dict(out or {})} for t, (tok, out) in wanted.items()
            ],
        }
        statement = self._prepared("complete_many+release+claim", self._complete_many_and_claim_statement)
        async with self._statement() as conn:
            rows = (await conn.execute(statement, params)).mappings().all()
            finished: list[dict[str, Any]] = next((r["done"] for r in rows if r["done"] is not None), [])
            claims = await self._claims_from_rows(conn, [r for r in rows if r["id"] is not None], worker_id)
        for job_id, now in sorted({(d["job_id"], d["now"]) for d in finished if not d["others_open"]}):
            async with self._write() as conn:
                await self._finish_job_if_done(conn, job_id, now)
        recorded = {d["id"] for d in finished}
        return [t for t in wanted if t not in recorded], claims

    def _complete_many_and_claim_statement(self) -> sa.Executable:
        """One row per claimed task (or one row with no task); one of them carries the batch's
        completions as a JSON array ``done`` (a plain join of the two sets would multiply them, and the
        same array on every row would be parsed again for each)."""
        finished = self._complete_many_statement(True, check_open=False)
        assert isinstance(finished, sa.Select)
        completion = finished.cte("completion")
        claimed, logged = self._claim_ctes()
        done_ids = sa.select(completion.c.id).scalar_subquery()
        done = (
            sa.select(
                sa.func.json_agg(
                    sa.func.json_build_object(
                        const("id"),
                        completion.c.id,
                        const("job_id"),
                        completion.c.job_id,
                        const("now"),
                        completion.c.now,
                        const("others_open"),
                        self._open_unless_claimed(claimed, completion.c.job_id, done_ids),
                    )
                )
            )
            .select_from(completion)
            .scalar_subquery()
        )
        one = sa.select(const(1).label("one")).subquery("one")
        return (
            sa.select(sa.case((sa.func.row_number().over() == const(1), done)).label("done"), claimed)
            .select_from(one.outerjoin(claimed, sa.true()))
            .add_cte(logged)
        )

    async def _complete_many_pg(
        self, wanted: Mapping[int, tuple[str, Mapping[str, Any] | None]], parentless: bool
    ) -> list[int]:
        """PostgreSQL: the successes, their results and events in one statement. When none of them has a
        split parent, the release of their dependents joins it and it runs in autocommit, as
        ``complete`` does for one such task."""
        items = [{"id": t, "token": tok, "output": dict(out or {})} for t, (tok, out) in wanted.items()]
        params = {"p_items": items}
        if parentless:
            statement = self._prepared("complete_many+release", lambda: self._complete_many_statement(True))
            async with self._statement() as conn:
                rows = (await conn.execute(statement, params)).mappings().all()
            for job_id, now in sorted({(r["job_id"], r["now"]) for r in rows if not r["others_open"]}):
                async with self._write() as conn:
                    await self._finish_job_if_done(conn, job_id, now)
        else:
            statement = self._prepared("complete_many", lambda: self._complete_many_statement(False))
            async with self._write() as conn:
                rows = (await conn.execute(statement, params)).mappings().all()
                by_job: dict[str, list[sa.RowMapping]] = {}
                for r in rows:
                    by_job.setdefault(r["job_id"], []).append(r)
                for job_id, done_rows in sorted(by_job.items()):
                    propagate = any(r["dependents"] or r["parent_id"] is not None for r in done_rows)
                    if propagate or not all(r["others_open"] for r in done_rows):
                        ids = [r["id"] for r in done_rows]
                        await self._after_done(conn, job_id, ids, done_rows[0]["now"], propagate=propagate)
        done = {r["id"] for r in rows}
        return [t for t in wanted if t not in done]

    def _complete_many_statement(self, release: bool, *, check_open: bool = True) -> sa.Executable:
        """``p_items`` is a JSON array of ``{id, token, output}``; rows whose token no longer holds the
        lease are left alone (and reported refused by their absence). As in ``complete``, ``lease_owner``
        stays as the record of who ran the task."""
        given = (
            sa.func.jsonb_to_recordset(sa.bindparam("p_items", type_=postgresql.JSONB()))
            .table_valued(
                sa.column("id", sa.BigInteger()),
                sa.column("token", sa.String()),
                sa.column("output", postgresql.JSONB()),
            )
            .render_derived(name="given", with_types=True)
        )
        done = self._succeed(given, check_open=check_open).cte("done")
        return self._record_success(done, done.c.output, release=release)
