"""Retention: finished work older than the policy is pruned with everything it owns, in bounded
batches; what the policy keeps (recent jobs, running jobs, their recent events) is never touched."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import sqlalchemy as sa

from helixcode.config import RetentionSettings, Settings
from helixcode.domain.enums import JobStatus
from helixcode.domain.records import WorkerInfo
from helixcode.llm.usage import CallContext
from helixcode.store.retention import DAY, Pruned
from helixcode.store.store import Store
from helixcode.store.tables import (
    checkpoints,
    events,
    jobs,
    llm_calls,
    results,
    task_dependencies,
    tasks,
    workers,
)
from helixcode.worker.reaper import Reaper
from tests.helpers import age, claim_one, run_to_end, spec, t, wait_until


async def finished_job(store: Store, name: str, size: int = 3) -> str:
    """A job of a chain of ``size`` tasks run to success, with a checkpoint and a model call."""
    job = await store.create_job(
        spec(*[t(f"k{i}", *([f"k{i - 1}"] if i else [])) for i in range(size)], name=name)
    )
    first = await claim_one(store)
    await store.save_checkpoint(first.task.id, first.token, "step", {"n": 1})
    await store.record_call(
        CallContext(job.id, first.task.id, first.attempt, "w1"),
        provider="p",
        model="m",
        ok=True,
        prompt_tokens=1,
        completion_tokens=1,
        cached_tokens=0,
        latency_s=0.1,
        first_token_s=None,
        error=None,
        cost_usd=0.0,
    )
    await store.complete(first.task.id, first.token)
    await run_to_end(store, job.id)
    assert (await store.job_summary(job.id)).job.status is JobStatus.SUCCEEDED
    return job.id


async def count(store: Store, table: sa.Table, *where: sa.ColumnElement[bool]) -> int:
    async with store._read() as conn:
        return int(
            (await conn.execute(sa.select(sa.func.count()).select_from(table).where(*where))).scalar_one()
        )


async def owned(store: Store, job_id: str) -> dict[str, int]:
    task_ids = sa.select(tasks.c.id).where(tasks.c.job_id == job_id).scalar_subquery()
    return {
        "jobs": await count(store, jobs, jobs.c.id == job_id),
        "tasks": await count(store, tasks, tasks.c.job_id == job_id),
        "deps": await count(store, task_dependencies, task_dependencies.c.task_id.in_(task_ids)),
        "checkpoints": await count(store, checkpoints, checkpoints.c.task_id.in_(task_ids)),
        "events": await count(store, events, events.c.job_id == job_id),
        "calls": await count(store, llm_calls, llm_calls.c.job_id == job_id),
    }


async def test_old_finished_jobs_go_with_all_they_own_and_the_rest_stays(store: Store) -> None:
    old = await finished_job(store, "old")
    recent = await finished_job(store, "recent")
    running = await store.create_job(spec(t("r0"), t("r1", "r0"), name="running"))
    await age(store, old, 40)
    await age(store, recent, 5)
    await age(store, running.id, 40)  # a long-running job: its old events go, the job stays
    results_before = await count(store, results)
    before_recent = await owned(store, recent)
    assert before_recent["checkpoints"] == 1
    assert before_recent["calls"] == 1
    assert before_recent["deps"] == 2

    pruned = await store.prune()

    assert await owned(store, old) == dict.fromkeys(before_recent, 0)
    assert await owned(store, recent) == before_recent
    assert await count(store, tasks, tasks.c.job_id == running.id) == 2
    assert await count(store, events, events.c.job_id == running.id) == 0
    assert pruned.jobs == 1
    assert pruned.tasks == 3
    assert pruned.llm_calls == 1
    assert pruned.results == 3 == results_before - await count(store, results)
    assert not pruned.more
    assert (await store.prune()).total == 0  # nothing left to do
    # The running job still works after its log was pruned.
    await run_to_end(store, running.id)
    assert (await store.job_summary(running.id)).job.status is JobStatus.SUCCEEDED


async def test_a_capped_pass_stops_with_work_left_and_the_next_goes_on(settings: Settings) -> None:
    settings = settings.model_copy(update={"retention": RetentionSettings(batch=10)})
    async with await Store.open(settings) as store:
        big = await finished_job(store, "big", size=25)
        await age(store, big, 40)
        first = await store.prune(max_batches=2)
        assert first.more
        assert 0 < first.total <= 20
        assert await count(store, jobs, jobs.c.id == big) == 1  # the job row goes last
        while (step := await store.prune(max_batches=2)).more:
            assert step.total > 0
        assert await owned(store, big) == dict.fromkeys(await owned(store, big), 0)


async def test_a_pass_capped_in_time_starts_no_statement_after_its_time(settings: Settings) -> None:
    """The reaper caps a pass in time, not in statements: none starts once the time is up (so a pass
    with no time left deletes nothing and says more is waiting), and passes with time go on to the end."""
    settings = settings.model_copy(update={"retention": RetentionSettings(batch=10)})
    async with await Store.open(settings) as store:
        big = await finished_job(store, "big", size=25)
        await age(store, big, 40)
        spent = await store.prune(seconds=0.0)
        assert spent.more
        assert spent.total == 0
        passes = 0
        while (step := await store.prune(seconds=5.0)).more:
            passes += 1
            assert passes < 100
        assert step.total > 0
        assert await owned(store, big) == dict.fromkeys(await owned(store, big), 0)
        assert await count(store, jobs, jobs.c.id == big) == 0


async def test_zero_keeps_for_ever_and_gone_workers_are_forgotten(settings: Settings) -> None:
    keep = RetentionSettings(jobs_days=0, events_days=0, workers_days=1)
    async with await Store.open(settings.model_copy(update={"retention": keep})) as store:
        old = await finished_job(store, "old")
        await age(store, old, 400)
        for name in ("gone", "live"):
            await store.register_worker(WorkerInfo(name, name, "h", 1, "0", (), {}, 1))
        await store.deregister_worker("gone")
        async with store._write() as conn:
            await conn.execute(
                workers.update().values(last_heartbeat_at=workers.c.last_heartbeat_at - 2 * DAY)
            )
        pruned = await store.prune()
        assert pruned.workers == 1
        assert pruned.jobs == 0
        assert pruned.events == 0
        assert await count(store, jobs, jobs.c.id == old) == 1
        assert [w.id for w in await store.list_workers()] == ["live"]


async def test_the_reapers_leader_prunes(store: Store) -> None:
    """A tick's pass is capped at half its interval: 2.5 s here, far more than one job needs even on a
    loaded machine (a 0.05 s interval gave the pass 25 ms, and CI's loaded machine ran out of it)."""
    old = await finished_job(store, "old")
    await age(store, old, 40)
    reaper = Reaper(store, "w1", interval=5.0)
    await reaper.tick()
    assert await count(store, jobs, jobs.c.id == old) == 0


async def test_the_leader_prunes_pass_after_pass_while_behind_then_waits_its_interval(store: Store) -> None:
    """A pass is capped at half a tick; while passes stop with work left the leader runs the next at
    once, not a tick later, so pruning keeps up with a fleet that finishes tasks faster than passes
    spaced a tick apart could delete them. Once caught up it waits its interval again."""
    reaper = Reaper(store, "w1", interval=5.0)
    real_prune = store.prune
    passes: list[float] = []

    async def prune(**kwargs: Any) -> Pruned:
        passes.append(time.monotonic())
        done = await real_prune(**kwargs)
        done.more = len(passes) < 3  # the first two passes stop with work left
        return done

    store.prune = prune  # type: ignore[method-assign]
    running = asyncio.create_task(reaper.run())
    try:
        await wait_until(lambda: len(passes) >= 3, 4.0)
        assert passes[2] - passes[0] < 2.0, "passes while behind come one after another"
        await asyncio.sleep(1.0)
        assert len(passes) == 3, "caught up: the next tick is an interval away"
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
