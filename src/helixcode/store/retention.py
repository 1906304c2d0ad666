"""Retention: finished work is pruned by policy so that the tables stay bounded over weeks of use.

What goes (``[retention]`` in config; 0 keeps a kind of record for ever):
- finished jobs (succeeded, failed, cancelled) older than ``jobs_days``, with all they own: tasks
  (their dependencies and checkpoints go by foreign key), results, events and model-call records;
- events of any job older than ``events_days`` (a job that runs for months keeps its recent log);
- stopped and lost workers not heard from for ``workers_days`` (their resource samples go with them);
- notifications older than ``events_days``, whatever became of them (a message that old is news to
  no one, and rows of a target no longer configured would otherwise wait for ever).

Every delete is one bounded statement of at most ``batch`` rows, each in its own short transaction, so
a pass never holds locks for long or grows a transaction with the size of the backlog, and workers
go on claiming between the batches. The reaper's leader runs a pass every ``interval`` seconds, capped
in time (the rest waits for the next pass, one tick later); ``helix db prune`` runs until nothing is
left.
Scans are bounded too: events are visited in primary-key order from the oldest, and a batch whose
first rows are young ends the pass instead of scanning the whole table for old rows.

The logs (events, model calls) feed the fleet's counters (``store.metrics``), which must never go
down: a pass first rolls the logs up (with the same cap on batches), prunes jobs and events only once
that rollup has caught up, and never deletes a log row past the rollup's cursor.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from helixcode.domain.enums import JobStatus
from helixcode.store.metrics import MetricsOps
from helixcode.store.tables import events, jobs, llm_calls, notifications, results, tasks, workers

__all__ = ["Pruned", "RetentionOps"]

DAY = 86_400.0
FINISHED_JOBS = (JobStatus.SUCCEEDED.value, JobStatus.FAILED.value, JobStatus.CANCELLED.value)
GONE_WORKERS = ("stopped", "lost")


@dataclass
class Pruned:
    """Rows one pass deleted, by kind; ``more`` when it stopped at its batch cap with work left."""

    jobs: int = 0
    tasks: int = 0
    events: int = 0
    results: int = 0
    llm_calls: int = 0
    workers: int = 0
    notifications: int = 0
    more: bool = False

    @property
    def total(self) -> int:
        return (
            self.jobs
            + self.tasks
            + self.events
            + self.results
            + self.llm_calls
            + self.workers
            + self.notifications
        )

    def to_dict(self) -> dict[str, int | bool]:
        return asdict(self)


class RetentionOps(MetricsOps):
    async def prune(
        self,
        *,
        max_batches: int | None = None,
        seconds: float | None = None,
        jobs_days: float | None = None,
        events_days: float | None = None,
    ) -> Pruned:
        """Delete what the retention policy no longer keeps, at most ``max_batches`` statements and
        for at most ``seconds`` (no new statement starts after that; None: no cap). ``jobs_days`` /
        ``events_days`` override the configured ages for this pass."""
        cfg = self.settings.retention
        jobs_days = cfg.jobs_days if jobs_days is None else jobs_days
        events_days = cfg.events_days if events_days is None else events_days
        budget = _Budget(max_batches, seconds)
        done = Pruned()
        now = await self.now()
        # A pass capped in time rolls up at most one batch: the reaper rolls up on every tick before
        # it prunes, and a backlog (after an upgrade) must not hold up the pass.
        rollup_cap = max_batches if max_batches is not None or seconds is None else 1
        caught_up = not (await self.rollup_metrics(max_batches=rollup_cap)).more
        if caught_up and jobs_days > 0:
            await self._prune_jobs(now - jobs_days * DAY, budget, done)
        if caught_up and events_days > 0:
            await self._prune_events(now - events_days * DAY, budget, done)
            await self._prune_notifications(now - events_days * DAY, budget, done)
        if cfg.workers_days > 0:
            await self._prune_workers(now - cfg.workers_days * DAY, budget, done)
        done.more = budget.exhausted or not caught_up
        return done

    async def _prune_jobs(self, cutoff: float, budget: _Budget, done: Pruned) -> None:
        while budget.take():
            async with self._read() as conn:
                job_ids = (
                    (
                        await conn.execute(
                            sa.select(jobs.c.id)
                            .where(jobs.c.status.in_(FINISHED_JOBS), jobs.c.finished_at < cutoff)
                            .order_by(jobs.c.created_at)
                            .limit(10)
                        )
                    )
                    .scalars()
                    .all()
                )
            if not job_ids:
                budget.give_back()
                return
            for job_id in job_ids:
                if not await self._prune_job(job_id, budget, done):
                    return

    async def _prune_job(self, job_id: str, budget: _Budget, done: Pruned) -> bool:
        """Delete one job's rows batch by batch, the job row last (so that a pass cut short leaves a
        job that the next pass finds again). False when the budget ran out first."""
        size = self.settings.retention.batch
        for table, counter in ((events, "events"), (llm_calls, "llm_calls")):
            while True:
                picked = sa.select(table.c.id).where(table.c.job_id == job_id).limit(size)
                deleted = await self._delete(
                    table.delete().where(table.c.id.in_(picked.scalar_subquery())), table
                )
                setattr(done, counter, getattr(done, counter) + deleted)
                if deleted < size:
                    break
                if not budget.take():
                    return False
        while True:
            # Children before parents: split parts and planned subtasks are created after their parent,
            # and ``tasks.parent_id`` has no cascade.
            async with self._write() as conn:
                ids = (
                    (
                        await conn.execute(
                            sa.select(tasks.c.id)
                            .where(tasks.c.job_id == job_id)
                            .order_by(tasks.c.id.desc())
                            .limit(size)
                        )
                    )
                    .scalars()
                    .all()
                )
                if ids:
                    done.results += (
                        await conn.execute(results.delete().where(results.c.task_id.in_(ids)))
                    ).rowcount
                    done.tasks += (await conn.execute(tasks.delete().where(tasks.c.id.in_(ids)))).rowcount
            if len(ids) < size:
                break
            if not budget.take():
                return False
        done.jobs += await self._delete(jobs.delete().where(jobs.c.id == job_id))
        return True

    async def _prune_events(self, cutoff: float, budget: _Budget, done: Pruned) -> None:
        size = self.settings.retention.batch
        while budget.take():
            # The oldest ``size`` events by id, of which those older than the cutoff: a bounded scan
            # (ids grow with time, so when the oldest are young there is nothing left to prune).
            oldest = sa.select(events.c.id, events.c.created_at).order_by(events.c.id).limit(size).subquery()
            old = sa.select(oldest.c.id).where(oldest.c.created_at < cutoff)
            deleted = await self._delete(
                events.delete().where(events.c.id.in_(old.scalar_subquery())), events
            )
            done.events += deleted
            if deleted < size:
                return

    async def _prune_notifications(self, cutoff: float, budget: _Budget, done: Pruned) -> None:
        """As for events: the oldest rows by id, a bounded scan."""
        size = self.settings.retention.batch
        n = notifications.c
        while budget.take():
            oldest = sa.select(n.id, n.created_at).order_by(n.id).limit(size).subquery()
            old = sa.select(oldest.c.id).where(oldest.c.created_at < cutoff)
            deleted = await self._delete(notifications.delete().where(n.id.in_(old.scalar_subquery())))
            done.notifications += deleted
            if not deleted:
                budget.give_back()  # nothing was due: the lookup is not counted as a batch
            if deleted < size:
                return

    async def _prune_workers(self, cutoff: float, budget: _Budget, done: Pruned) -> None:
        size = self.settings.retention.batch
        while budget.take():
            gone = (
                sa.select(workers.c.id)
                .where(workers.c.status.in_(GONE_WORKERS), workers.c.last_heartbeat_at < cutoff)
                .limit(size)
            )
            deleted = await self._delete(workers.delete().where(workers.c.id.in_(gone.scalar_subquery())))
            done.workers += deleted
            if deleted < size:
                return

    async def _delete(self, statement: sa.Delete, log: sa.Table | None = None) -> int:
        """Run one bounded delete; of a log (``log``), only rows the metrics rollup has counted."""
        async with self._write() as conn:
            if log is None:
                return int((await conn.execute(statement)).rowcount)
            counted = await self._rolled_up_to(conn, log)
            deleted = int((await conn.execute(statement.where(log.c.id <= counted))).rowcount)
            if deleted:
                await self._after_log_delete(conn, log)
            return deleted


class _Budget:
    """How many more delete statements a pass may run, and until when (None: no cap)."""

    def __init__(self, batches: int | None, seconds: float | None = None) -> None:
        self.left = batches
        self.until = None if seconds is None else time.monotonic() + seconds
        self.exhausted = False

    def take(self) -> bool:
        out_of_time = self.until is not None and time.monotonic() >= self.until
        if out_of_time or (self.left is not None and self.left <= 0):
            self.exhausted = True
            return False
        if self.left is not None:
            self.left -= 1
        return True

    def give_back(self) -> None:
        if self.left is not None:
            self.left += 1
