"""PostgreSQL's success writer: the statements that record tasks as succeeded, built in one place.

A success marks the task (fenced by its lease token), adds its result row and its ``succeeded`` event
and, for tasks without a split parent, releases its dependents, logs the ``ready`` events of those it
frees and wakes idle workers: all as data-modifying CTEs of one statement, one round trip on the
busiest path there is. ``succeed`` takes one task (bind parameters ``p_task``, ``p_token``) or a batch
(rows of id, token, output); ``record_success`` adds the rest around it. The statements that also
claim (``OutcomeOps.complete_and_claim``) wrap these. SQLite's writer is
``OutcomeOps._complete_many_sqlite``: its ``RETURNING`` cannot carry the correlated subqueries used here.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from helixcode.domain.enums import TaskStatus
from helixcode.store.base import EMPTY_JSONB, READY_CHANNEL, const, status_is, unfinished
from helixcode.store.database import db_now
from helixcode.store.tables import events, results, task_dependencies, tasks

__all__ = ["many_successes", "one_success", "open_unless_claimed", "others_open", "record_success", "succeed"]

S = TaskStatus


def succeed(given: sa.TableValuedAlias | None = None, *, check_open: bool = True) -> sa.UpdateBase:
    """Mark held tasks succeeded in one fenced statement that also returns what the rest of the
    completion needs: the clock, whether anything waits on each (``dependents``), and (with
    ``check_open``) whether other tasks of its job are still open (``others_open``: if so, the job cannot
    end here). One task is ``p_task`` with ``p_token``; with ``given`` (rows of id, token, output), a
    batch, whose outputs come back too. ``lease_owner`` stays as the record of who ran it; the cleared
    token is what ends the lease."""
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
    extra.append(sa.exists().where(deps.c.depends_on_id == tasks.c.id).label("dependents"))
    if check_open:
        extra.append(others_open(tasks.c.job_id, done_ids).label("others_open"))
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


def others_open(
    job_id: sa.ColumnElement[str], done: sa.ColumnElement[Any] | sa.ScalarSelect[Any]
) -> sa.Exists:
    """Whether the job has unfinished tasks besides ``done`` (an id, or a subquery of ids). Other rows
    are read as of the statement's start, when the tasks it completes still look running: so they are
    left out by id."""
    other = tasks.alias("other")
    excluded = other.c.id.not_in(done) if isinstance(done, sa.ScalarSelect) else other.c.id != done
    return sa.exists().where(other.c.job_id == job_id, unfinished(other.c.status), excluded)


def open_unless_claimed(
    claimed: sa.CTE, job_id: sa.ColumnElement[str], done: sa.ColumnElement[Any] | sa.ScalarSelect[Any]
) -> sa.Case[bool]:
    """``others_open`` for a statement that also claims: a task just claimed from the same job already
    says yes. The CASE keeps the search over the job's tasks (a scan that grows with the job's finished
    tasks) for the rare completion that claims nothing from its own job."""
    same_job = sa.exists(sa.select(claimed.c.id).where(claimed.c.job_id == job_id).correlate_except(claimed))
    return sa.case((same_job, sa.true()), else_=others_open(job_id, done))


def one_success(*, release: bool = False, check_open: bool = True) -> sa.Select[Any]:
    """One task's success (``p_task``, ``p_token``, ``p_output``) in one statement."""
    done = succeed(check_open=check_open).cte("done")
    return record_success(done, sa.bindparam("p_output", type_=postgresql.JSONB()), release=release)


def many_successes(*, release: bool, check_open: bool = True) -> sa.Select[Any]:
    """A batch's successes in one statement. ``p_items`` is a JSON array of ``{id, token, output}``;
    rows whose token no longer holds the lease are left alone (and reported refused by their absence)."""
    given = (
        sa.func.jsonb_to_recordset(sa.bindparam("p_items", type_=postgresql.JSONB()))
        .table_valued(
            sa.column("id", sa.BigInteger()),
            sa.column("token", sa.String()),
            sa.column("output", postgresql.JSONB()),
        )
        .render_derived(name="given", with_types=True)
    )
    done = succeed(given, check_open=check_open).cte("done")
    return record_success(done, done.c.output, release=release)


def record_success(done: sa.CTE, output: sa.ColumnElement[Any], *, release: bool) -> sa.Select[Any]:
    """What a success writes besides the task row, as data-modifying CTEs around ``done`` (the tasks just
    marked succeeded): result rows and ``succeeded`` events; with ``release``, also the dependents'
    countdown, ``ready`` events for those it frees, and the wake-up for idle workers. Split parents are
    not handled here: tasks that have one take the transactional path (``PropagationOps._after_done``)."""
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
    # A dependent may wait on several tasks of one batch: count them, since an UPDATE changes a row once
    # per statement. Under a concurrent release the row lock makes PostgreSQL re-read the row, so the
    # countdown stays exact.
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
    # One notification whose payload counts the tasks made ready (``worker.wakeup.WakeHub`` wakes that
    # many idle workers per process), none when nothing became ready.
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
