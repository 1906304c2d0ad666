"""The queue: leases with fencing, completion and failure, checkpoints, progress, maintenance.

Every write a worker makes names its lease token and runs as ``UPDATE ... WHERE lease_token = :token``;
no row updated means the lease is gone and the write is refused with ``LeaseLost`` (fencing), so a worker
that was presumed dead can never overwrite its successor.

Claims are in ``claims``, what a finished task changes for the rest of its job in ``propagation``; this
module holds what a worker writes while it holds a lease, and maintenance.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from helixcode.domain.backoff import retry_delay
from helixcode.domain.enums import Criticality, JobStatus, TaskStatus
from helixcode.domain.models import Checkpoint, Claim, LeaseState, Maintenance
from helixcode.domain.ordering import CRIT_LEVELS, TOP_PRIORITY
from helixcode.errors import LeaseLost, SchedulerError
from helixcode.store.base import EMPTY_JSONB, READY_CHANNEL, const, event, status_is, unfinished
from helixcode.store.database import db_now
from helixcode.store.propagation import BROKEN, PropagationOps
from helixcode.store.rows import checkpoint_from_row
from helixcode.store.tables import checkpoints, events, jobs, results, task_dependencies, tasks

__all__ = ["BROKEN", "CheckpointTooLarge", "QueueOps"]

S = TaskStatus
#: Arbitrary constant naming the maintenance lock among PostgreSQL advisory locks.
MAINTENANCE_LOCK_ID = 0x48454C4901


class CheckpointTooLarge(SchedulerError):
    """A checkpoint over ``tasks.checkpoint_max_bytes``."""


_LEASE_CLEARED: dict[str, Any] = {"lease_owner": None, "lease_token": None, "lease_expires_at": None}


class QueueOps(PropagationOps):
    """The scheduler's writes. Decisions (backoff, order, splitting) come from ``helixcode.domain``."""

    # -- leases ---------------------------------------------------------------------------------

    async def renew(self, worker_id: str, leases: Mapping[int, str]) -> dict[int, LeaseState]:
        """Extend every lease the worker still holds, in one statement; report the others."""
        if not leases:
            return {}
        async with self._write() as conn:
            return await self._renew(conn, worker_id, leases)

    def _clock(self) -> sa.ColumnElement[float]:
        return db_now()

    async def _renew(
        self, conn: AsyncConnection, worker_id: str, leases: Mapping[int, str]
    ) -> dict[int, LeaseState]:
        if not leases:
            return {}
        stmt = (
            tasks.update()
            .where(
                sa.tuple_(tasks.c.id, tasks.c.lease_token).in_(list(leases.items())),
                tasks.c.status == S.RUNNING.value,
                tasks.c.lease_owner == worker_id,
            )
            .values(lease_expires_at=db_now() + self.settings.tasks.lease_ttl)
            .returning(tasks.c.id)
        )
        held = set((await conn.execute(stmt)).scalars().all())
        missing = [task_id for task_id in leases if task_id not in held]
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
            for task_id in leases
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

    # -- what a worker reports ------------------------------------------------------------------

    async def report_progress(
        self, task_id: int, token: str, fraction: float, message: str | None = None
    ) -> None:
        fraction = min(1.0, max(0.0, fraction))
        async with self._write() as conn:
            now = await self._now(conn)
            row = await self._fenced(conn, task_id, token, progress=fraction, progress_message=message)
            await self._events(
                conn,
                [
                    event(
                        row["job_id"],
                        "progress",
                        now,
                        task_id=task_id,
                        attempt=row["attempts"],
                        worker_id=row["lease_owner"],
                        fraction=round(fraction, 4),
                        message=message,
                    )
                ],
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
            await self._events(
                conn,
                [
                    event(
                        row["job_id"],
                        "checkpoint",
                        now,
                        task_id=task_id,
                        attempt=row["attempts"],
                        worker_id=row["lease_owner"],
                        name=name,
                        bytes=len(encoded),
                    )
                ],
            )

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

    # -- outcomes -------------------------------------------------------------------------------

    async def complete(self, task_id: int, token: str, output: Mapping[str, Any] | None = None) -> None:
        """Record success and release whatever was waiting on this task."""
        params: dict[str, Any] = {"p_task": task_id, "p_token": token}
        parentless = task_id in self._parentless
        self._parentless.discard(task_id)
        if self.dialect == "postgresql" and parentless:
            # The success, its result and events, and the release of its dependents are one statement,
            # with no transaction around it. If it was the job's last open task, ending the job follows
            # (should this process die in between, maintenance ends the job, as after a completion race).
            async with self._statement() as conn:
                statement = self._prepared("complete+release", lambda: self._succeed_and_record(release=True))
                row = await self._run_fenced(conn, statement, {**params, "p_output": dict(output or {})})
            if not row["others_open"]:
                async with self._write() as conn:
                    await self._finish_job_if_done(conn, row["job_id"], row["now"])
            return
        async with self._write() as conn:
            if self.dialect == "postgresql":
                statement = self._prepared("complete", self._succeed_and_record)
                row = await self._run_fenced(conn, statement, {**params, "p_output": dict(output or {})})
                now = row["now"]
                propagate = bool(row["dependents"] or row["parent_id"] is not None)
                if propagate or not row["others_open"]:
                    await self._after_done(conn, row["job_id"], [task_id], now, propagate=propagate)
            else:
                row = await self._run_fenced(conn, self._prepared("succeed", self._succeed), params)
                now = row["now"]
                await self._record_result(conn, row, token, "succeeded", now, output or {}, None)
                duration = now - (row["started_at"] or now)
                await self._events(
                    conn,
                    [
                        event(
                            row["job_id"],
                            "succeeded",
                            now,
                            task_id=task_id,
                            attempt=row["attempts"],
                            worker_id=row["lease_owner"],
                            duration=round(duration, 3),
                        )
                    ],
                )
                waited_on = self._prepared(
                    "waited_on",
                    lambda: sa.select(
                        sa.exists().where(task_dependencies.c.depends_on_id == sa.bindparam("p_task"))
                    ),
                )
                propagate = bool(await conn.scalar(waited_on, params) or row["parent_id"] is not None)
                # The job may have ended with this task (``_after_done`` looks).
                await self._after_done(conn, row["job_id"], [task_id], now, propagate=propagate)

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
        statement = self._prepared("complete+release+claim", self._complete_and_claim_statement)
        async with self._statement() as conn:
            rows = (await conn.execute(statement, params)).mappings().all()
            if not rows:
                raise LeaseLost(task_id, token)
            done = rows[0]
            claimed = [r for r in rows if r["id"] is not None]
            claims = await self._claims_from_rows(conn, claimed, worker_id)
        if not done["done_others_open"]:
            async with self._write() as conn:
                await self._finish_job_if_done(conn, done["done_job_id"], done["done_now"])
        return claims

    def _complete_and_claim_statement(self) -> sa.Executable:
        """PostgreSQL: ``complete+release`` as a CTE, gating the claim's CTEs; one row per claimed task
        (or one with no task), each carrying the completion's columns as ``done_*``."""
        finished = self._succeed_and_record(release=True, check_open=False)
        assert isinstance(finished, sa.Select)
        completion = finished.cte("completion")
        claimed, logged = self._claim_ctes(gate=completion)
        others_open = self._open_unless_claimed(claimed, completion.c.job_id, completion.c.id)
        return (
            sa.select(
                *[c.label(f"done_{c.key}") for c in completion.c],
                others_open.label("done_others_open"),
                claimed,
            )
            .select_from(completion.outerjoin(claimed, sa.true()))
            .add_cte(logged)
        )

    def _succeed(self, given: sa.TableValuedAlias | None = None, *, check_open: bool = True) -> sa.UpdateBase:
        """Mark held tasks succeeded in one fenced statement that also returns what the rest of the
        completion needs: the clock, whether anything waits on each, and (with ``check_open``) whether
        other tasks of its job are still open (if so, the job cannot end here). One task is ``p_task``
        with ``p_token``; with ``given`` (rows of id, token, output), a batch, whose outputs come back
        too. ``lease_owner`` stays as the record of who ran it; the cleared token is what ends the lease."""
        deps = task_dependencies
        if given is None:
            task_id = sa.bindparam("p_task", type_=sa.Integer())
            held = sa.and_(
                tasks.c.id == task_id, tasks.c.lease_token == sa.bindparam("p_token", type_=sa.String())
            )
            done_ids: sa.ColumnElement[Any] | sa.ScalarSelect[Any] = task_id
            extra: list[sa.ColumnElement[Any]] = []
        else:
            held = sa.and_(tasks.c.id == given.c.id, tasks.c.lease_token == given.c.token)
            done_ids = sa.select(given.c.id).scalar_subquery()
            extra = [given.c.output]
        if self.dialect == "postgresql":
            # SQLite writes RETURNING's columns unqualified, so a correlated subquery there would compare
            # its own columns: ``complete`` asks these questions in separate queries on SQLite.
            extra.append(sa.exists().where(deps.c.depends_on_id == tasks.c.id).label("dependents"))
            if check_open:
                extra.append(self._others_open(tasks.c.job_id, done_ids).label("others_open"))
        return (
            tasks.update()
            .where(held, status_is(S.RUNNING))
            .values(
                status=const(S.SUCCEEDED.value),
                finished_at=db_now(),
                progress=const(1.0),
                last_error=sa.null(),
                lease_token=sa.null(),
                lease_expires_at=sa.null(),
            )
            .returning(
                tasks.c.id,
                tasks.c.job_id,
                tasks.c.attempts,
                tasks.c.lease_owner,
                tasks.c.started_at,
                tasks.c.parent_id,
                tasks.c.finished_at.label("now"),
                *extra,
            )
        )

    @staticmethod
    def _others_open(
        job_id: sa.ColumnElement[str], done: sa.ColumnElement[Any] | sa.ScalarSelect[Any]
    ) -> sa.Exists:
        """Whether the job has unfinished tasks besides ``done`` (an id, or a subquery of ids). Other
        rows are read as of the statement's start, when the tasks it completes still look running: so
        they are left out by id."""
        other = tasks.alias("other")
        excluded = other.c.id.not_in(done) if isinstance(done, sa.ScalarSelect) else other.c.id != done
        return sa.exists().where(other.c.job_id == job_id, unfinished(other.c.status), excluded)

    @staticmethod
    def _open_unless_claimed(
        claimed: sa.CTE, job_id: sa.ColumnElement[str], done: sa.ColumnElement[Any] | sa.ScalarSelect[Any]
    ) -> sa.Case[bool]:
        """``_others_open`` for a statement that also claims: a task just claimed from the same job
        already says yes. The CASE keeps the search over the job's tasks (a scan that grows with the
        job's finished tasks) for the rare completion that claims nothing from its own job."""
        same_job = sa.exists(
            sa.select(claimed.c.id).where(claimed.c.job_id == job_id).correlate_except(claimed)
        )
        return sa.case((same_job, sa.true()), else_=QueueOps._others_open(job_id, done))

    @staticmethod
    async def _run_fenced(
        conn: AsyncConnection, stmt: sa.Executable, params: Mapping[str, Any]
    ) -> sa.RowMapping:
        row = (await conn.execute(stmt, dict(params))).mappings().first()
        if row is None:
            raise LeaseLost(params["p_task"], params["p_token"])
        return row

    def _succeed_and_record(self, *, release: bool = False, check_open: bool = True) -> sa.Executable:
        """PostgreSQL: one task's success (``p_task``, ``p_token``, ``p_output``) in one statement."""
        done = self._succeed(check_open=check_open).cte("done")
        return self._record_success(done, sa.bindparam("p_output", type_=postgresql.JSONB()), release=release)

    def _record_success(
        self, done: sa.CTE, output: sa.ColumnElement[Any], *, release: bool
    ) -> sa.Select[Any]:
        """PostgreSQL: what a success writes besides the task row, as data-modifying CTEs around ``done``
        (the tasks just marked succeeded): result rows and ``succeeded`` events; with ``release``, also
        the dependents' countdown, ``ready`` events for those it frees, and the wake-up for idle workers.
        One round trip instead of one per step on the busiest path there is. Split parents are not
        handled here: tasks that have one take the transactional path (``_after_done``)."""
        recorded = results.insert().from_select(
            ["task_id", "attempt", "worker_id", "outcome", "error", "output", "started_at", "finished_at"],
            sa.select(
                done.c.id,
                done.c.attempts,
                done.c.lease_owner,
                const("succeeded"),
                sa.null(),
                output,
                done.c.started_at,
                done.c.now,
            ),
        )
        duration = sa.func.round(
            sa.cast(done.c.now - sa.func.coalesce(done.c.started_at, done.c.now), sa.Numeric), const(3)
        )
        logged = (
            events.insert()
            .from_select(
                ["job_id", "task_id", "kind", "details", "attempt", "worker_id", "created_at"],
                sa.select(
                    done.c.job_id,
                    done.c.id,
                    const("succeeded"),
                    sa.func.jsonb_build_object(const("duration"), duration),
                    done.c.attempts,
                    done.c.lease_owner,
                    done.c.now,
                ),
            )
            .returning(events.c.id)
            .cte("logged")
        )
        columns = [
            done.c.id,
            done.c.job_id,
            done.c.parent_id,
            done.c.now,
            done.c.dependents,
            *[c for c in done.c if c.key == "others_open"],
        ]
        if not release:
            return sa.select(*columns).add_cte(recorded.cte("recorded"), logged)
        deps = task_dependencies
        # A dependent may wait on several tasks of one batch: count them, since an UPDATE changes a row
        # once per statement. Under a concurrent release the row lock makes PostgreSQL re-read the row,
        # so the countdown stays exact.
        satisfied = (
            sa.select(deps.c.task_id, sa.func.count().label("n"), sa.func.max(done.c.now).label("now"))
            .select_from(deps.join(done, deps.c.depends_on_id == done.c.id))
            .group_by(deps.c.task_id)
            .subquery("satisfied")
        )
        freed = sa.and_(tasks.c.pending_deps - satisfied.c.n <= const(0), status_is(S.BLOCKED))
        released = (
            tasks.update()
            .where(tasks.c.id == satisfied.c.task_id)
            .values(
                pending_deps=tasks.c.pending_deps - satisfied.c.n,
                status=sa.case((freed, const(S.READY.value)), else_=tasks.c.status),
                ready_at=sa.case((freed, satisfied.c.now), else_=tasks.c.ready_at),
            )
            .returning(tasks.c.id, tasks.c.job_id, tasks.c.status, tasks.c.pending_deps, satisfied.c.now)
            .cte("released")
        )
        # Reading ``logged`` first makes the successes' events precede the ``ready`` events they cause.
        ready_logged = (
            events.insert()
            .from_select(
                ["job_id", "task_id", "kind", "details", "created_at"],
                sa.select(
                    released.c.job_id,
                    released.c.id,
                    const("ready"),
                    EMPTY_JSONB,
                    released.c.now,
                ).where(
                    released.c.status == const(S.READY.value),
                    released.c.pending_deps <= const(0),
                    sa.exists(sa.select(logged.c.id)),
                ),
            )
            .returning(events.c.id)
            .cte("ready_logged")
        )
        # One notification whose payload counts the tasks made ready (``worker.wakeup.WakeHub`` wakes
        # that many idle workers per process), none when nothing became ready.
        made_ready = sa.select(sa.func.count()).select_from(ready_logged).scalar_subquery()
        woke = (
            sa.select(sa.func.count())
            .select_from(
                sa.select(sa.func.pg_notify(const(READY_CHANNEL), sa.cast(made_ready, sa.Text)))
                .where(made_ready > const(0))
                .subquery()
            )
            .scalar_subquery()
        )
        return sa.select(*columns, woke.label("woke")).add_cte(recorded.cte("recorded"), logged)

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
                await self._fenced(
                    conn,
                    task_id,
                    token,
                    status=S.RETRYING.value,
                    failures=failures,
                    next_attempt_at=now + delay,
                    last_error=error,
                    **_LEASE_CLEARED,
                )
                kind, status, extra = "retried", S.RETRYING, {"delay": round(delay, 3)}
            else:
                await self._fenced(
                    conn,
                    task_id,
                    token,
                    status=S.FAILED.value,
                    failures=failures,
                    finished_at=now,
                    last_error=error,
                    **_LEASE_CLEARED,
                )
                kind, status, extra = "failed", S.FAILED, {}
            await self._record_result(conn, row, token, "failed", now, output or {}, error)
            await self._events(
                conn,
                [
                    event(
                        row["job_id"],
                        kind,
                        now,
                        task_id=task_id,
                        attempt=row["attempts"],
                        worker_id=row["lease_owner"],
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
                conn, task_id, token, status=S.READY.value, ready_at=now, **_LEASE_CLEARED
            )
            await self._events(
                conn,
                [
                    event(
                        row["job_id"],
                        "requeued",
                        now,
                        task_id=task_id,
                        attempt=row["attempts"],
                        worker_id=row["lease_owner"],
                        reason=reason,
                    )
                ],
            )

    async def _record_result(
        self,
        conn: AsyncConnection,
        row: sa.RowMapping,
        token: str,
        outcome: str,
        now: float,
        output: Mapping[str, Any],
        error: str | None,
    ) -> None:
        await conn.execute(
            results.insert().values(
                task_id=row["id"],
                attempt=row["attempts"],
                worker_id=row["lease_owner"],
                outcome=outcome,
                error=error,
                output=dict(output),
                started_at=row["started_at"],
                finished_at=now,
            )
        )

    # -- maintenance ----------------------------------------------------------------------------

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
            steps: dict[str, Any] = await self._maintenance_steps(conn, now)
            return Maintenance(**steps)

    async def _finish_idle_jobs(self, conn: AsyncConnection, now: float) -> int:
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
        return len(idle)

    async def _maintenance_steps(self, conn: AsyncConnection, now: float) -> dict[str, Any]:
        """Requeue expired leases (failing tasks that lost too many), make due retries ready, age."""
        cfg = self.settings.tasks
        expired = [status_is(S.RUNNING), tasks.c.lease_expires_at < now]
        gave_up = (
            await conn.execute(
                tasks.update()
                .where(*expired, tasks.c.lease_losses + 1 >= cfg.max_lease_losses)
                .values(
                    status=S.FAILED.value,
                    lease_losses=tasks.c.lease_losses + 1,
                    finished_at=now,
                    last_error="lost its worker too many times",
                    **_LEASE_CLEARED,
                )
                .returning(tasks.c.id, tasks.c.job_id, tasks.c.attempts, tasks.c.lease_owner)
            )
        ).all()
        requeued = (
            await conn.execute(
                tasks.update()
                .where(*expired)
                .values(
                    status=S.READY.value,
                    lease_losses=tasks.c.lease_losses + 1,
                    ready_at=now,
                    **_LEASE_CLEARED,
                )
                .returning(tasks.c.id, tasks.c.job_id, tasks.c.attempts, tasks.c.lease_owner)
            )
        ).all()
        # The RETURNING clause sees new values, so lease_owner is already cleared: name no worker.
        await self._events(
            conn,
            [
                event(j, "requeued", now, task_id=t, attempt=a, reason="lease expired")
                for t, j, a, _ in requeued
            ]
            + [
                event(j, "failed", now, task_id=t, attempt=a, reason="lease lost too often")
                for t, j, a, _ in gave_up
            ],
        )
        for job_id in sorted({j for _, j, _, _ in gave_up}):
            await self._after_failure(conn, job_id, [t for t, j, _, _ in gave_up if j == job_id], now)
        due = (
            await conn.execute(
                tasks.update()
                .where(status_is(S.RETRYING), tasks.c.next_attempt_at <= now)
                .values(status=S.READY.value, ready_at=now, next_attempt_at=None)
                .returning(tasks.c.id, tasks.c.job_id)
            )
        ).all()
        await self._events(conn, [event(j, "ready", now, task_id=t) for t, j in due])
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
        finished = await self._finish_idle_jobs(conn, now)
        return {
            "jobs_finished": finished,
            "requeued": len(requeued),
            "lost_failed": len(gave_up),
            "retries_ready": len(due),
            "aged": aged.rowcount or 0,
        }
