"""Batched acknowledgements on both databases: ``Store.complete_many`` and the worker's ``AckBatcher``.

A batch must record each success exactly as ``complete`` does (status, result row, ``succeeded`` event,
released dependents, finished split parents and jobs), and a stale token must refuse only its own item.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
import sqlalchemy as sa

from helixcode.config import Settings
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.splitting import Part
from helixcode.errors import LeaseLost
from helixcode.store.store import Store
from helixcode.store.tables import results, tasks
from helixcode.worker.acks import AckBatcher, Completion
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.helpers import OpenStore, event_kinds, spec, statuses, t

S = TaskStatus


async def result_rows(store: Store, job_id: str) -> list[tuple[str, int, str, dict[str, object]]]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(tasks.c.key, results.c.attempt, results.c.outcome, results.c.output)
            .join(tasks, tasks.c.id == results.c.task_id)
            .where(tasks.c.job_id == job_id)
            .order_by(tasks.c.key)
        )
        return [(k, a, o, dict(out)) for k, a, o, out in rows.all()]


async def test_a_batch_records_every_success_like_complete_does(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b"), t("c")))
    claims = await store.claim("w1", limit=3)
    refused = await store.complete_many([(c.task.id, c.token, {"key": c.task.key}) for c in claims])
    assert refused == []
    assert await statuses(store, job.id) == {"a": S.SUCCEEDED, "b": S.SUCCEEDED, "c": S.SUCCEEDED}
    assert await result_rows(store, job.id) == [
        ("a", 1, "succeeded", {"key": "a"}),
        ("b", 1, "succeeded", {"key": "b"}),
        ("c", 1, "succeeded", {"key": "c"}),
    ]
    for key in "abc":
        assert await event_kinds(store, job.id, key) == ["ready", "claimed", "succeeded"]
    succeeded = [e for e in await store.list_events(job.id) if e.kind == "succeeded" and e.task_key]
    assert all(e.worker_id == "w1" and e.details["duration"] >= 0 for e in succeeded)
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_a_stale_token_refuses_only_its_own_item(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b"), t("c")))
    a, b, c = await store.claim("w1", limit=3)
    refused = await store.complete_many(
        [(a.task.id, a.token, {}), (b.task.id, "stale", {}), (c.task.id, c.token, {})]
    )
    assert refused == [b.task.id]
    assert await statuses(store, job.id) == {"a": S.SUCCEEDED, "b": S.RUNNING, "c": S.SUCCEEDED}
    assert [k for k, *_ in await result_rows(store, job.id)] == ["a", "c"]
    assert (await store.get_job(job.id)).status is JobStatus.RUNNING
    await store.complete(b.task.id, b.token)
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_a_batch_releases_dependents_once_all_their_parents_are_done(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b"), t("x"), t("after", "a", "b"), t("late", "x")))
    claims = {c.task.key: c for c in await store.claim("w1", limit=3)}
    assert set(claims) == {"a", "b", "x"}
    # "a" and "b" in one batch, "x" in the next: "after" becomes ready with the first, "late" with the second.
    await store.complete_many([(claims[k].task.id, claims[k].token, {}) for k in ("a", "b")])
    state = await statuses(store, job.id)
    assert (state["after"], state["late"]) == (S.READY, S.BLOCKED)
    await store.complete_many([(claims["x"].task.id, claims["x"].token, {})])
    assert (await statuses(store, job.id))["late"] is S.READY
    assert (await event_kinds(store, job.id, "after")).count("ready") == 1
    rest = await store.claim("w1", limit=5)
    assert sorted(c.task.key for c in rest) == ["after", "late"]
    await store.complete_many([(c.task.id, c.token, None) for c in rest])
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_a_batch_that_finishes_a_split_finishes_its_parent(store: Store) -> None:
    job = await store.create_job(spec(t("big"), t("after", "big")))
    await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
    parts = await store.claim("w1", limit=2)
    assert len(parts) == 2
    assert await store.complete_many([(c.task.id, c.token, {}) for c in parts]) == []
    assert (await store.get_task(job.id, "big")).status is S.SUCCEEDED
    assert (await store.get_task(job.id, "after")).status is S.READY


async def test_tasks_claimed_elsewhere_are_recorded_all_the_same(store: Store, open_store: OpenStore) -> None:
    """A batch of tasks this store did not claim takes the transactional path; the outcome is the same."""
    other = await open_store()
    job = await store.create_job(spec(t("a"), t("b")))
    claims = await other.claim("w2", limit=2)
    assert await store.complete_many([(c.task.id, c.token, {}) for c in claims]) == []
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    assert len(await result_rows(store, job.id)) == 2


async def test_the_batcher_groups_completions_and_fails_only_the_refused_runner(store: Store) -> None:
    job = await store.create_job(spec(*[t(f"t{i}") for i in range(6)]))
    claims = await store.claim("w1", limit=6)
    batches: list[int] = []

    async def write(items: Sequence[Completion]) -> list[int]:
        batches.append(len(items))
        return await store.complete_many(items)

    batcher = AckBatcher(write, max_batch=4)
    stale = claims[2]
    outcomes = await asyncio.gather(
        *(batcher.complete(c.task.id, "stale" if c is stale else c.token, {}) for c in claims),
        return_exceptions=True,
    )
    assert batches == [4, 2], "runners finishing in the same turn share a write, at most 4 at a time"
    assert [type(o) for o in outcomes] == [type(None)] * 2 + [LeaseLost] + [type(None)] * 3
    state = await statuses(store, job.id)
    assert state.pop(stale.task.key) is S.RUNNING
    assert set(state.values()) == {S.SUCCEEDED}


@pytest.mark.parametrize("concurrency", [1, 5])
async def test_a_worker_with_batched_acks_runs_a_graph_exactly_once(
    settings: Settings, concurrency: int
) -> None:
    store = await Store.open(settings)
    try:
        plan = [t(f"p{i}") for i in range(12)] + [t(f"c{i}", f"p{i}", f"p{(i + 1) % 12}") for i in range(12)]
        job = await store.create_job(spec(*plan))
        worker = Worker(
            store,
            settings,
            WorkerOptions(
                concurrency=concurrency, exit_when_idle=True, detect=False, reaper=False, batch_acks=True
            ),
        )
        stats = await asyncio.wait_for(worker.run(), 60)
        assert stats.succeeded == stats.claimed == 24
        assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
        rows = await result_rows(store, job.id)
        assert len(rows) == 24
        assert {k for k, *_ in rows} == {x["id"] for x in plan}
    finally:
        await store.aclose()


async def test_a_batch_that_also_claims_records_first_and_claims_the_freed_slots(store: Store) -> None:
    job = await store.create_job(spec(*[t(f"t{i}") for i in range(5)], t("after", "t0")))
    first = await store.claim("w1", limit=2)
    assert [c.task.key for c in first] == ["t0", "t1"]
    items = [(first[0].task.id, first[0].token, {"k": 0}), (first[1].task.id, "stale", {})]
    refused, claims = await store.complete_many_and_claim(items, "w1", (), 2)
    assert refused == [first[1].task.id]
    assert [c.task.key for c in claims] == ["t2", "t3"], "the queue as it was before the batch"
    state = await statuses(store, job.id)
    assert (state["t0"], state["t1"], state["after"]) == (S.SUCCEEDED, S.RUNNING, S.READY)
    assert await event_kinds(store, job.id, "t0") == ["ready", "claimed", "succeeded"]
    assert (await store.task_outputs(job.id))["t0"] == {"k": 0}
    left = [first[1], *claims]
    while left:
        batch, left = left, []
        refused, more = await store.complete_many_and_claim(
            [(c.task.id, c.token, {}) for c in batch], "w1", (), 3
        )
        assert refused == []
        left += more
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_a_batch_that_claims_from_another_job_still_decides_whether_its_job_ended(store: Store) -> None:
    a_job = await store.create_job(spec(t("a1"), t("a2"), t("a3")))
    a1, a2, a3 = await store.claim("w1", limit=3)
    b_job = await store.create_job(spec(*[t(f"b{i}", priority="high") for i in range(3)]))
    refused, got = await store.complete_many_and_claim(
        [(a1.task.id, a1.token, {}), (a2.task.id, a2.token, {})], "w1", (), 2
    )
    assert refused == []
    assert [c.task.key for c in got] == ["b0", "b1"]
    assert (await store.get_job(a_job.id)).status is JobStatus.RUNNING, "a3 still runs"
    refused, more = await store.complete_many_and_claim([(a3.task.id, a3.token, {})], "w1", (), 1)
    assert [c.task.key for c in more] == ["b2"]
    assert (await store.get_job(a_job.id)).status is JobStatus.SUCCEEDED
    await store.complete_many_and_claim([(c.task.id, c.token, {}) for c in (*got, *more)], "w1", (), 3)
    assert (await store.get_job(b_job.id)).status is JobStatus.SUCCEEDED
