"""Outcomes: how a lease ends. A success (one task or a batch, optionally refilling the freed slots in
the same round trip), a failed attempt (retried with backoff while attempts remain), or a task handed
back unfinished by a draining worker.

Every success goes through one writer per dialect: on PostgreSQL the statements of ``store.success``;
on SQLite ``_complete_many_sqlite``, a batch of one for ``complete``. A stale token refuses only its own
item (``LeaseLost`` for a single task).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.backoff import retry_delay
from helixcode.domain.enums import Criticality, TaskStatus
from helixcode.domain.models import Claim
from helixcode.errors import LeaseLost
from helixcode.store import success
from helixcode.store.base import const, task_event
from helixcode.store.database import db_now
from helixcode.store.leases import LEASE_CLEARED, LeaseOps
from helixcode.store.tables import results, task_dependencies, tasks

__all__ = ["Completion", "OutcomeOps"]

S = TaskStatus

#: ``(task_id, lease_token, output)``: one success to record.
Completion = tuple[int, str, Mapping[str, Any] | None]


class OutcomeOps(LeaseOps):
    """Successes, failures and hand-backs, each fenced by the lease token."""

    # -- successes ------------------------------------------------------------------------------

    async def complete(self, task_id: int, token: str, output: Mapping[str, Any] | None = None) -> None:
        """Record success and release whatever was waiting on this task; ``LeaseLost`` if the lease is
        gone. A batch of one: the writer is ``complete_many``'s."""
        if await self.complete_many([(task_id, token, output)]):
            raise LeaseLost(task_id, token)

    async def complete_many(self, items: Sequence[Completion]) -> list[int]:
        """Record these successes in one transaction; returns the ids refused because their lease is
        gone (the others are recorded). Dependents are released per job."""
        if not items:
            return []
        wanted = {task_id: (token, output) for task_id, token, output in items}
        parentless = wanted.keys() <= self._parentless
        self._parentless.difference_update(wanted)
        if self.dialect == "postgresql":
            done = await self._complete_many_pg(wanted, parentless)
        else:
            done = await self._complete_many_sqlite(wanted)
        return [t for t in wanted if t not in done]

    async def complete_and_claim(
        self,
        task_id: int,
        token: str,
        output: Mapping[str, Any] | None,
        worker_id: str,
        capabilities: Iterable[str] = (),
        limit: int = 1,
        *,
        min_criticality: Criticality | None = None,
    ) -> list[Claim]:
        """``complete``, then ``claim`` for the slot it frees. On PostgreSQL, for a task without a split
        parent, both are one statement: a worker pays one round trip and one commit per task instead of
        two. The claim happens only if the success was recorded (a stale token claims nothing), and it
        sees the queue as it was before this success: tasks the success frees go to the next claim."""
        if self.dialect != "postgresql" or task_id not in self._parentless:
            await self.complete(task_id, token, output)
            return await self.claim(worker_id, capabilities, limit, min_criticality=min_criticality)
        self._parentless.discard(task_id)
        params = {
            **self._claim_params(worker_id, capabilities, limit, min_criticality),
            "p_task": task_id,
            "p_token": token,
            "p_output": dict(output or {}),
        }
        async with self._statement() as conn:
            rows = await self._fetch(
                conn, "complete+release+claim", self._complete_and_claim_statement, params
            )
            if not rows:
                raise LeaseLost(task_id, token)
            done = rows[0]
            claimed = [r for r in rows if r["id"] is not None]
            claims = await self._claims_from_rows(conn, claimed, worker_id)
        if not done["done_others_open"]:
            async with self._write() as conn:
                await self._finish_job_if_done(conn, done["done_job_id"], done["done_now"])
        return claims

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
            "p_items": _items(wanted),
        }
        async with self._statement() as conn:
            rows = await self._fetch(
                conn, "complete_many+release+claim", self._complete_many_and_claim_statement, params
            )
            finished: list[dict[str, Any]] = next((r["done"] for r in rows if r["done"] is not None), [])
            claims = await self._claims_from_rows(conn, [r for r in rows if r["id"] is not None], worker_id)
        await self._finish_jobs({(d["job_id"], d["now"]) for d in finished if not d["others_open"]})
        recorded = {d["id"] for d in finished}
        return [t for t in wanted if t not in recorded], claims

    async def _complete_many_pg(
        self, wanted: Mapping[int, tuple[str, Mapping[str, Any] | None]], parentless: bool
    ) -> set[int]:
        """PostgreSQL: the successes, their results and events in one statement. When none of them has a
        split parent, the release of their dependents joins it and it runs in autocommit; otherwise the
        release (split parents included) follows in the same transaction. Returns the ids recorded."""
        params = {"p_items": _items(wanted)}
        if parentless:
            async with self._statement() as conn:
                rows = await self._fetch(
                    conn, "complete_many+release", lambda: success.many_successes(release=True), params
                )
            await self._finish_jobs({(r["job_id"], r["now"]) for r in rows if not r["others_open"]})
            return {r["id"] for r in rows}
        statement = self._prepared("complete_many", lambda: success.many_successes(release=False))
        async with self._write() as conn:
            rows = (await conn.execute(statement, params)).mappings().all()
            for job_id, done_rows in _by_job(rows):
                propagate = any(r["dependents"] or r["parent_id"] is not None for r in done_rows)
                if propagate or not all(r["others_open"] for r in done_rows):
                    ids = [r["id"] for r in done_rows]
                    await self._after_done(conn, job_id, ids, done_rows[0]["now"], propagate=propagate)
        return {r["id"] for r in rows}

    async def _complete_many_sqlite(
        self, wanted: Mapping[int, tuple[str, Mapping[str, Any] | None]]
    ) -> set[int]:
        """SQLite: the held tasks marked succeeded (one fenced ``UPDATE ... RETURNING``), their result
        rows and events, and the release of their dependents, in one ``BEGIN IMMEDIATE`` transaction.
        The statements are built once per store (``_prepared``): on SQLite the Python around a
        statement costs more than the statement. Returns the ids recorded."""
        held = [(t, token) for t, (token, _) in wanted.items()]
        async with self._write() as conn:
            rows = (
                (await conn.execute(self._prepared("sqlite:succeed", _sqlite_succeed), {"held": held}))
                .mappings()
                .all()
            )
            if not rows:
                return set()
            ids = [r["id"] for r in rows]
            waited_on = set(
                (
                    await conn.execute(self._prepared("sqlite:waited_on", _sqlite_waited_on), {"ids": ids})
                ).scalars()
            )
            await conn.execute(
                self._prepared("results", results.insert),
                [_result(r, "succeeded", r["now"], wanted[r["id"]][1], None) for r in rows],
            )
            await self._events(
                conn,
                [
                    task_event(
                        r, "succeeded", r["now"], duration=round(r["now"] - (r["started_at"] or r["now"]), 3)
                    )
                    for r in rows
                ],
            )
            for job_id, done_rows in _by_job(rows):
                propagate = any(r["id"] in waited_on or r["parent_id"] is not None for r in done_rows)
                ended = [r["id"] for r in done_rows]
                await self._after_done(conn, job_id, ended, done_rows[0]["now"], propagate=propagate)
        return set(ids)

    async def _finish_jobs(self, ended: set[tuple[str, float]]) -> None:
        """After a one-statement success: end each job whose last open task it was (should this
        process die in between, maintenance ends the job, as after a completion race)."""
        for job_id, now in sorted(ended):
            async with self._write() as conn:
                await self._finish_job_if_done(conn, job_id, now)

    def _complete_and_claim_statement(self) -> sa.Executable:
        """PostgreSQL: ``complete+release`` as a CTE, gating the claim's CTEs; one row per claimed task
        (or one with no task), each carrying the completion's columns as ``done_*``."""
        completion = success.one_success(release=True, check_open=False).cte("completion")
        claimed, logged = self._claim_ctes(gate=completion)
        still_open = success.open_unless_claimed(claimed, completion.c.job_id, completion.c.id)
        return (
            sa.select(
                *[c.label(f"done_{c.key}") for c in completion.c],
                still_open.label("done_others_open"),
                claimed,
            )
            .select_from(completion.outerjoin(claimed, sa.true()))
            .add_cte(logged)
        )

    def _complete_many_and_claim_statement(self) -> sa.Executable:
        """One row per claimed task (or one row with no task); one of them carries the batch's
        completions as a JSON array ``done`` (a plain join of the two sets would multiply them, and the
        same array on every row would be parsed again for each)."""
        completion = success.many_successes(release=True, check_open=False).cte("completion")
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
                        success.open_unless_claimed(claimed, completion.c.job_id, done_ids),
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

    # -- failures and hand-backs ----------------------------------------------------------------

    async def fail(
        self,
        task_id: int,
        token: str,
        error: str,
        *,
        retryable: bool = True,
        output: Mapping[str, Any] | None = None,
    ) -> TaskStatus:
        """Record a failed attempt: retry with backoff while attempts remain, else fail for good."""
        cfg = self.settings.tasks
        self._parentless.discard(task_id)
        async with self._write() as conn:
            now = await self._now(conn)
            row = await self._fenced(conn, task_id, token)
            failures = row["failures"] + 1
            if retryable and failures < row["max_attempts"]:
                delay = retry_delay(
                    failures, row["backoff_base"] or cfg.backoff_base, row["backoff_cap"] or cfg.backoff_cap
                )
                status, extra = S.RETRYING, {"delay": round(delay, 3)}
                values: dict[str, Any] = {"next_attempt_at": now + delay}
            else:
                status, extra, values = S.FAILED, {}, {"finished_at": now}
            await self._fenced(
                conn,
                task_id,
                token,
                status=status.value,
                failures=failures,
                last_error=error,
                **values,
                **LEASE_CLEARED,
            )
            await self._record_result(conn, row, "failed", now, output, error)
            await self._events(
                conn,
                [
                    task_event(
                        row,
                        "retried" if status is S.RETRYING else "failed",
                        now,
                        error=error[:2000],
                        failures=failures,
                        duration=round(now - (row["started_at"] or now), 3),
                        **extra,
                    )
                ],
            )
            if status is S.FAILED:
                await self._after_failure(conn, row["job_id"], [task_id], now)
        return status

    async def hand_back(self, task_id: int, token: str, reason: str = "worker stopping") -> None:
        """Return a task unfinished (a draining worker); it is not counted as a failure."""
        self._parentless.discard(task_id)
        async with self._write() as conn:
            now = await self._now(conn)
            row = await self._fenced(
                conn, task_id, token, status=S.READY.value, ready_at=now, **LEASE_CLEARED
            )
            await self._events(conn, [task_event(row, "requeued", now, reason=reason)])

    async def _record_result(
        self,
        conn: AsyncConnection,
        row: Mapping[Any, Any],
        outcome: str,
        now: float,
        output: Mapping[str, Any] | None,
        error: str | None,
    ) -> None:
        """The result row of an attempt that ended outside the success writers (a failure, a planner's
        expansion)."""
        await conn.execute(results.insert().values(**_result(row, outcome, now, output, error)))


def _result(
    row: Mapping[Any, Any], outcome: str, now: float, output: Mapping[str, Any] | None, error: str | None
) -> dict[str, Any]:
    """A ``results`` row for an attempt, from its task row."""
    return {
        "task_id": row["id"],
        "attempt": row["attempts"],
        "worker_id": row["lease_owner"],
        "outcome": outcome,
        "error": error,
        "output": dict(output or {}),
        "started_at": row["started_at"],
        "finished_at": now,
    }


def _sqlite_succeed() -> sa.UpdateBase:
    """SQLite: mark the held tasks (``held``: pairs of id and lease token) succeeded, returning what the
    rest of the success needs. ``lease_owner`` stays as the record of who ran it, as on PostgreSQL."""
    return (
        tasks.update()
        .where(
            sa.tuple_(tasks.c.id, tasks.c.lease_token).in_(sa.bindparam("held", expanding=True)),
            tasks.c.status == S.RUNNING.value,
        )
        .values(
            status=S.SUCCEEDED.value,
            finished_at=db_now(),
            progress=1.0,
            last_error=None,
            lease_token=None,
            lease_expires_at=None,
        )
        .returning(
            tasks.c.id,
            tasks.c.job_id,
            tasks.c.attempts,
            tasks.c.lease_owner,
            tasks.c.started_at,
            tasks.c.parent_id,
            tasks.c.finished_at.label("now"),
        )
    )


def _sqlite_waited_on() -> sa.Select[Any]:
    """SQLite: which of ``ids`` other tasks depend on (its ``RETURNING`` cannot ask in the update)."""
    deps = task_dependencies
    return (
        sa.select(deps.c.depends_on_id)
        .where(deps.c.depends_on_id.in_(sa.bindparam("ids", expanding=True)))
        .distinct()
    )


def _items(wanted: Mapping[int, tuple[str, Mapping[str, Any] | None]]) -> list[dict[str, Any]]:
    """``p_items`` of the batch statements: one ``{id, token, output}`` per success."""
    return [{"id": t, "token": tok, "output": dict(out or {})} for t, (tok, out) in wanted.items()]


def _by_job(rows: Sequence[sa.RowMapping]) -> list[tuple[str, list[sa.RowMapping]]]:
    """Rows grouped by job, jobs in id order (a fixed order takes row locks without deadlocks)."""
    by_job: dict[str, list[sa.RowMapping]] = {}
    for r in rows:
        by_job.setdefault(r["job_id"], []).append(r)
    return sorted(by_job.items())
