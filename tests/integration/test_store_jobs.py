from __future__ import annotations

import asyncio

import psycopg
import pytest
import sqlalchemy as sa

from helixcode.domain.enums import JobStatus, Priority, TaskStatus
from helixcode.domain.plan import parse_plan
from helixcode.errors import NotFound, StoreError
from helixcode.store.store import Store
from helixcode.store.tables import jobs, tasks

PLAN = {
    "name": "pipeline",
    "tasks": [
        {"id": "a", "type": "design", "title": "A", "run": {"shell": "true"}},
        {"id": "b", "type": "building", "title": "B", "depends_on": ["a"], "priority": "high"},
        {"id": "c", "type": "testing", "title": "C", "depends_on": ["a", "b"], "max_attempts": 7},
    ],
}


async def test_create_job_writes_tasks_dependencies_and_events(store: Store) -> None:
    job = await store.create_job(parse_plan(PLAN), workdir="/tmp")
    assert job.status is JobStatus.RUNNING
    found = {t.key: t for t in await store.list_tasks(job.id)}
    assert found["a"].status is TaskStatus.READY
    assert found["a"].ready_at is not None
    assert found["b"].status is TaskStatus.BLOCKED
    assert found["b"].priority is Priority.HIGH
    assert found["c"].depends_on == ("a", "b")
    assert found["c"].max_attempts == 7
    assert found["a"].max_attempts == store.settings.tasks.max_attempts
    assert found["a"].run == {"shell": "true", "env": {}}
    kinds = [(e.kind, e.task_key) for e in await store.list_events(job.id)]
    assert kinds == [("created", None), ("ready", "a")]
    summary = await store.job_summary(job.id)
    assert summary.total == 3
    assert summary.counts == {TaskStatus.READY: 1, TaskStatus.BLOCKED: 2}
    assert summary.progress == 0.0


async def test_times_come_from_the_database_clock_with_subsecond_resolution(store: Store) -> None:
    first = await store.now()
    second = await store.now()
    assert 1.7e9 < first <= second
    assert first != int(first) or second != int(second)


async def test_job_prefixes_resolve_uniquely(store: Store) -> None:
    job = await store.create_job(parse_plan(PLAN))
    assert await store.resolve_job_id(job.id[:4]) == job.id
    assert await store.resolve_job_id(job.id) == job.id
    with pytest.raises(NotFound):
        await store.resolve_job_id("zzzz-not-a-job")
    with pytest.raises(NotFound):
        await store.resolve_job_id("%")


async def test_a_submission_that_fails_midway_writes_nothing(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    await store.create_job(parse_plan(PLAN))

    async def broken_events(*_args: object, **_kw: object) -> None:
        raise StoreError("disk full")

    # Tasks and dependencies are inserted before the events: fail there and expect a full rollback.
    monkeypatch.setattr(store, "_events", broken_events)
    with pytest.raises(StoreError, match="disk full"):
        await store.create_job(parse_plan(PLAN))
    async with store._read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(jobs))).scalar_one() == 1
        assert (await conn.execute(sa.select(sa.func.count()).select_from(tasks))).scalar_one() == 3


async def test_list_jobs_newest_first(store: Store) -> None:
    first = await store.create_job(parse_plan(PLAN))
    second = await store.create_job(parse_plan({**PLAN, "name": "second"}))
    listed = [s.job.id for s in await store.list_jobs()]
    assert listed == [second.id, first.id]


async def test_large_graph_is_inserted_in_one_go(store: Store) -> None:
    n = 2_000
    spec = parse_plan(
        {
            "tasks": [
                {
                    "id": f"t{i}",
                    "type": "building",
                    "title": f"T{i}",
                    "depends_on": [f"t{i // 2}"] if i else [],
                }
                for i in range(n)
            ]
        }
    )
    job = await store.create_job(spec)
    summary = await store.job_summary(job.id)
    assert summary.counts == {TaskStatus.READY: 1, TaskStatus.BLOCKED: n - 1}


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_large_submission_never_waits_on_nor_cancels_a_vacuum_of_tasks(store: Store) -> None:
    """A large submission refreshes the planner's statistics of ``tasks``, but not by waiting for the
    lock a VACUUM holds: autovacuum gives way to a waiter, so a stream of large submissions would
    cancel every autovacuum of the busiest table (seen in the soak: millions of dead rows). Here a
    session holds the lock VACUUM takes for as long as the submission runs."""
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    async with await psycopg.AsyncConnection.connect(url) as vacuum_like:
        await vacuum_like.execute("LOCK TABLE tasks IN SHARE UPDATE EXCLUSIVE MODE")
        plan = parse_plan(
            {"tasks": [{"id": f"t{i}", "type": "building", "title": "t"} for i in range(1_000)]}
        )
        job = await asyncio.wait_for(store.create_job(plan), 10)
        await vacuum_like.rollback()
    assert (await store.job_summary(job.id)).counts == {TaskStatus.READY: 1_000}


@pytest.mark.postgres
async def test_a_settled_follower_never_passes_an_event_that_commits_late(pg_database: str) -> None:
    """Event ids come from a sequence, and on PostgreSQL transactions commit out of id order: a reader
    that moved its cursor past a fresh event could miss an older id that commits a moment later.
    A settled read returns only events old enough for that not to happen."""
    import asyncio

    from helixcode.config import DatabaseSettings, Settings
    from helixcode.store.database import transactional
    from helixcode.store.tables import events

    # Three connections at once (two writers and the reader), and real transactions on them.
    store = await Store.open(Settings(database=DatabaseSettings(url=pg_database, pool_size=3)))
    engine = transactional(store.engine)
    try:
        job = await store.create_job(parse_plan({"tasks": [{"id": "a", "type": "building", "title": "a"}]}))
        start = (await store.list_events(job.id))[-1].id
        row = {"job_id": job.id, "kind": "progress", "details": {}}
        async with engine.connect() as late:
            await late.begin()
            await late.execute(events.insert().values(**row, created_at=await store.now()))  # the lower id
            async with engine.begin() as early:
                await early.execute(events.insert().values(**row, created_at=await store.now()))
            unsettled = await store.list_events(job.id, start)
            assert len(unsettled) == 1, "the hazard: the higher id is visible, the lower one not yet"
            assert await store.list_events(job.id, start, settled=True) == []
            await late.commit()
        await asyncio.sleep(1.1)
        settled = await store.list_events(job.id, start, settled=True)
        assert len(settled) == 2
        assert settled[0].id < settled[1].id
    finally:
        await store.aclose()
