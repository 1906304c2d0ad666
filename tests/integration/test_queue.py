"""The queue on both databases: readiness, claim order, capabilities, fenced leases, retries, checkpoints.

Every test drives the store the way workers do (claim, then write with the lease token) and asserts on
what the database then says: statuses, events, results rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random

import pytest
import sqlalchemy as sa

from helixcode.config import DatabaseSettings, Settings
from helixcode.domain.backoff import backoff_ceiling
from helixcode.domain.enums import Criticality, JobStatus, Priority, TaskStatus
from helixcode.domain.models import LeaseState, Task
from helixcode.domain.splitting import Part
from helixcode.errors import LeaseLost
from helixcode.store import outcomes as outcomes_module
from helixcode.store.leases import CheckpointTooLarge
from helixcode.store.store import Store
from helixcode.store.tables import tasks
from helixcode.worker.wakeup import ReadyListener, WakeHub
from tests.helpers import OpenStore, claim_one, event_kinds, result_rows, run_to_end, spec, statuses, t

S = TaskStatus


# -- readiness ----------------------------------------------------------------------------------


async def test_a_task_becomes_ready_only_when_every_dependency_succeeded(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b"), t("c", "a", "b"), t("d", "c")))
    assert await statuses(store, job.id) == {"a": S.READY, "b": S.READY, "c": S.BLOCKED, "d": S.BLOCKED}

    first = await claim_one(store)
    await store.complete(first.task.id, first.token)
    after_one = await statuses(store, job.id)
    assert after_one["c"] is S.BLOCKED, "one of two dependencies is not enough"

    second = await claim_one(store)
    assert {first.task.key, second.task.key} == {"a", "b"}
    await store.complete(second.task.id, second.token)
    assert (await statuses(store, job.id))["c"] is S.READY
    assert (await statuses(store, job.id))["d"] is S.BLOCKED
    assert await event_kinds(store, job.id, "c") == ["ready"]
    assert await run_to_end(store, job.id) == ["c", "d"]
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_a_failed_dependency_fails_its_dependents_transitively(store: Store) -> None:
    job = await store.create_job(
        spec(
            t("a", priority="high"),
            t("b", "a"),
            t("c", "b"),
            t("d", "a"),
            t("e", "c", "x"),
            t("x"),
        )
    )
    a = await claim_one(store)
    assert a.task.key == "a"
    assert await store.fail(a.task.id, a.token, "broken", retryable=False) is S.FAILED
    found = await statuses(store, job.id)
    assert found == {
        "a": S.FAILED,
        "b": S.UPSTREAM_FAILED,
        "c": S.UPSTREAM_FAILED,
        "d": S.UPSTREAM_FAILED,
        "e": S.UPSTREAM_FAILED,
        "x": S.READY,
    }
    for key in "bcde":
        assert await event_kinds(store, job.id, key) == ["upstream_failed"]
    # The job is not over while an unrelated task can still run; then it ends failed.
    assert (await store.get_job(job.id)).status is JobStatus.RUNNING
    assert await run_to_end(store, job.id) == ["x"]
    assert (await store.get_job(job.id)).status is JobStatus.FAILED


# -- claim order --------------------------------------------------------------------------------


async def test_claims_follow_priority_then_criticality(store: Store) -> None:
    pairs = list(itertools.product(Priority, Criticality)) * 2
    random.Random(5).shuffle(pairs)
    job = await store.create_job(
        spec(*[t(f"t{i}", priority=p.value, criticality=c.value) for i, (p, c) in enumerate(pairs)])
    )
    claimed: list[tuple[int, int]] = []
    while claims := await store.claim("w1"):
        claimed += [(c.task.priority.rank, c.task.criticality.rank) for c in claims]
    assert len(claimed) == len(pairs)
    assert claimed == sorted(claimed, reverse=True)
    assert (await store.job_summary(job.id)).counts == {S.RUNNING: len(pairs)}


async def test_among_equals_the_task_ready_first_is_claimed_first(store: Store) -> None:
    # 'late' has the lower id but becomes ready only after 'early' (when its gate succeeds).
    job = await store.create_job(spec(t("gate", priority="high"), t("late", "gate"), t("early")))
    gate = await claim_one(store)
    assert gate.task.key == "gate"
    await store.complete(gate.task.id, gate.token)
    found = {task.key: task for task in await store.list_tasks(job.id)}
    early, late = found["early"].ready_at, found["late"].ready_at
    assert early is not None
    assert late is not None
    assert early < late
    assert found["late"].id < found["early"].id
    assert [c.task.key for c in await store.claim("w1", limit=5)] == ["early", "late"]
    # Across jobs too: an older job's ready task goes before a newer job's equal one.
    older = await store.create_job(spec(t("one")))
    newer = await store.create_job(spec(t("one")))
    assert [c.task.job_id for c in await store.claim("w1", limit=5)] == [older.id, newer.id]


async def test_aging_lets_a_waiting_low_task_overtake_newer_high_ones(open_store: OpenStore) -> None:
    store = await open_store(aging_seconds=0.1)
    old = await store.create_job(spec(t("old-low", priority="low")))
    await asyncio.sleep(0.3)  # three aging periods: enough to climb from low to high
    for _ in range(3):
        await store.maintain()
    new = await store.create_job(spec(t("new-high", priority="high"), t("new-low", priority="low")))
    await store.maintain()  # the fresh low task has not waited: it must not be lifted
    order = [(c.task.job_id, c.task.key) for c in await store.claim("w1", limit=3)]
    assert order == [(old.id, "old-low"), (new.id, "new-high"), (new.id, "new-low")]


async def test_without_aging_a_waiting_low_task_stays_behind_high_ones(open_store: OpenStore) -> None:
    store = await open_store(aging_seconds=3600)
    await store.create_job(spec(t("old-low", priority="low")))
    await asyncio.sleep(0.1)
    await store.maintain()
    await store.create_job(spec(t("new-high", priority="high")))
    assert [c.task.key for c in await store.claim("w1", limit=2)] == ["new-high", "old-low"]


async def test_a_worker_claims_only_tasks_whose_requirements_it_has(store: Store) -> None:
    job = await store.create_job(
        spec(
            t("plain"),
            t("gpu", requires=["gpu"]),
            t("gpu-cuda", requires=["gpu", "cuda"]),
            t("cuda", requires=["cuda"]),
        )
    )
    assert [c.task.key for c in await store.claim("none", (), limit=10)] == ["plain"]
    assert await store.claim("none", (), limit=10) == []
    assert [c.task.key for c in await store.claim("gpu", ("gpu", "ssd"), limit=10)] == ["gpu"]
    assert await store.claim("gpu", ("gpu",), limit=10) == []
    both = await store.claim("both", ("cuda", "gpu", "x"), limit=10)
    assert sorted(c.task.key for c in both) == ["cuda", "gpu-cuda"]
    assert (await store.job_summary(job.id)).counts == {S.RUNNING: 4}


async def test_a_batch_claim_takes_the_best_tasks_each_with_its_own_lease(store: Store) -> None:
    job = await store.create_job(
        spec(*[t(f"t{i}", priority=["low", "normal", "high"][i % 3]) for i in range(7)])
    )
    batch = await store.claim("w1", limit=3)
    assert [c.task.priority for c in batch] == [Priority.HIGH, Priority.HIGH, Priority.NORMAL]
    assert len({c.token for c in batch}) == 3
    assert all(c.attempt == 1 and c.task.status is S.RUNNING for c in batch)
    assert all(c.task.lease_owner == "w1" for c in batch)
    rest = await store.claim("w2", limit=10)
    assert len(rest) == 4
    assert {c.task.id for c in batch}.isdisjoint(c.task.id for c in rest)
    claimed_events = [e for e in await store.list_events(job.id) if e.kind == "claimed"]
    assert len(claimed_events) == 7
    assert {e.worker_id for e in claimed_events[:3]} == {"w1"}


async def test_a_paused_jobs_tasks_are_not_claimed(store: Store) -> None:
    paused = await store.create_job(spec(t("p", priority="high")))
    other = await store.create_job(spec(t("o", priority="low")))
    await store.pause_job(paused.id)
    assert [c.task.job_id for c in await store.claim("w1", limit=5)] == [other.id]
    assert await store.claim("w1", limit=5) == []
    await store.resume_job(paused.id)
    assert [c.task.job_id for c in await store.claim("w1", limit=5)] == [paused.id]


async def test_concurrent_claimers_never_share_a_task(open_store: OpenStore, store: Store) -> None:
    n_tasks, n_claimers = 80, 8
    job = await store.create_job(
        spec(*[t(f"t{i}", priority=["low", "normal", "high"][i % 3]) for i in range(n_tasks)])
    )
    claimers = [await open_store() for _ in range(n_claimers)]

    async def drain(s: Store, worker: str) -> list[int]:
        got: list[int] = []
        while claims := await s.claim(worker, limit=3):
            got += [c.task.id for c in claims]
            # A worker runs what it claimed before claiming again. Without this pause one claimer can
            # drain a SQLite queue before the others' busy handlers retry.
            await asyncio.sleep(0.005)
        return got

    per_claimer = await asyncio.gather(*(drain(s, f"w{i}") for i, s in enumerate(claimers)))
    claimed = [task_id for got in per_claimer for task_id in got]
    assert len(claimed) == len(set(claimed)) == n_tasks
    assert sum(1 for got in per_claimer if got) > 1, "the claimers did run concurrently"
    found = await store.list_tasks(job.id)
    assert all(task.attempts == 1 and task.status is S.RUNNING for task in found)
    claimed_events = [e for e in await store.list_events(job.id) if e.kind == "claimed"]
    assert sorted(e.task_key for e in claimed_events) == sorted(task.key for task in found)


# -- leases and fencing -------------------------------------------------------------------------


async def test_every_write_with_a_stale_token_is_refused(store: Store) -> None:
    job = await store.create_job(spec(t("a")))
    claim = await claim_one(store)
    bogus = "0" * 32
    with pytest.raises(LeaseLost):
        await store.report_progress(claim.task.id, bogus, 0.5)
    with pytest.raises(LeaseLost):
        await store.save_checkpoint(claim.task.id, bogus, "c", {"x": 1})
    with pytest.raises(LeaseLost):
        await store.complete(claim.task.id, bogus)
    with pytest.raises(LeaseLost):
        await store.fail(claim.task.id, bogus, "nope")
    assert (await store.get_task(job.id, "a")).status is S.RUNNING
    assert await store.list_checkpoints(claim.task.id) == []
    await store.complete(claim.task.id, claim.token)
    # A finished task's lease is gone: the same token cannot write again.
    with pytest.raises(LeaseLost):
        await store.complete(claim.task.id, claim.token)
    with pytest.raises(LeaseLost):
        await store.report_progress(claim.task.id, claim.token, 1.0)


async def test_an_expired_lease_is_requeued_and_the_late_result_refused(open_store: OpenStore) -> None:
    store = await open_store(lease_ttl=0.2)
    job = await store.create_job(spec(t("a"), t("b", "a")))
    old = await claim_one(store, "old-worker")
    await asyncio.sleep(0.35)
    assert (await store.maintain()).requeued == 1
    task = await store.get_task(job.id, "a")
    assert task.status is S.READY
    assert (task.lease_losses, task.failures) == (1, 0)

    new = await claim_one(store, "new-worker")
    assert new.task.id == old.task.id
    assert new.token != old.token
    assert new.attempt == 2
    with pytest.raises(LeaseLost):
        await store.complete(old.task.id, old.token, {"by": "old"})
    with pytest.raises(LeaseLost):
        await store.report_progress(old.task.id, old.token, 0.9)
    await store.complete(new.task.id, new.token, {"by": "new"})
    with pytest.raises(LeaseLost):
        await store.fail(old.task.id, old.token, "too late")

    rows = await result_rows(store, job.id)
    assert [(r["key"], r["attempt"], r["worker_id"], r["output"]) for r in rows] == [
        ("a", 2, "new-worker", {"by": "new"})
    ]
    assert (await store.get_task(job.id, "a")).status is S.SUCCEEDED
    assert (await store.get_task(job.id, "b")).status is S.READY
    kinds = await event_kinds(store, job.id, "a")
    assert kinds == ["ready", "claimed", "requeued", "claimed", "succeeded"]


async def test_a_task_that_loses_its_lease_too_often_fails(open_store: OpenStore) -> None:
    store = await open_store(lease_ttl=0.1, max_lease_losses=2)
    job = await store.create_job(spec(t("a"), t("after", "a")))
    for expected_losses in (1, 2):
        await claim_one(store)
        await asyncio.sleep(0.2)
        done = await store.maintain()
        task = await store.get_task(job.id, "a")
        assert task.lease_losses == expected_losses
        assert task.failures == 0
    assert (done.requeued, done.lost_failed) == (0, 1)
    assert task.status is S.FAILED
    assert (await store.get_task(job.id, "after")).status is S.UPSTREAM_FAILED
    assert (await store.get_job(job.id)).status is JobStatus.FAILED


async def test_renewing_keeps_a_lease_past_its_ttl(open_store: OpenStore) -> None:
    store = await open_store(lease_ttl=1.0)  # a second's margin between the last renewal and maintain
    await store.create_job(spec(t("a"), t("b")))
    held = await claim_one(store, "w1")
    lapsed = await claim_one(store, "w1")
    for _ in range(3):  # past the TTL in all (a slow machine only sleeps longer)
        await asyncio.sleep(0.35)
        assert await store.renew("w1", {held.task.id: held.token}) == {held.task.id: LeaseState.HELD}
    assert (await store.maintain()).requeued == 1  # only the lease nobody renewed
    states = await store.renew("w1", {held.task.id: held.token, lapsed.task.id: lapsed.token})
    assert states == {held.task.id: LeaseState.HELD, lapsed.task.id: LeaseState.LOST}
    # Another worker cannot renew a lease it does not own, even with the right token.
    assert await store.renew("w2", {held.task.id: held.token}) == {held.task.id: LeaseState.LOST}


# -- retries ------------------------------------------------------------------------------------


async def test_a_task_may_set_its_own_backoff(open_store: OpenStore) -> None:
    # Config says wait up to 300 s; the task says at most 0.02 s, and its own numbers win.
    store = await open_store(backoff_base=100.0, backoff_cap=300.0)
    job = await store.create_job(spec(t("quick", max_attempts=5, backoff_base=0.01, backoff_cap=0.02)))
    for _ in range(3):
        claim = await claim_one(store)
        assert await store.fail(claim.task.id, claim.token, "boom") is S.RETRYING
        retried = [e for e in await store.list_events(job.id) if e.kind == "retried"][-1]
        assert 0.0 <= retried.details["delay"] <= 0.02 + 5e-4
        await asyncio.sleep(0.03)
        assert (await store.maintain()).retries_ready == 1


async def test_retry_delays_follow_the_backoff_formula(open_store: OpenStore) -> None:
    base, cap = 0.04, 0.15
    store = await open_store(backoff_base=base, backoff_cap=cap)
    job = await store.create_job(spec(t("flaky", max_attempts=6)))
    for failures in range(1, 6):
        claim = await claim_one(store)
        assert claim.attempt == failures
        assert await store.fail(claim.task.id, claim.token, f"boom {failures}") is S.RETRYING
        task = await store.get_task(job.id, "flaky")
        retried = [e for e in await store.list_events(job.id) if e.kind == "retried"][-1]
        ceiling = min(cap, base * 2 ** (failures - 1))
        assert retried.details["failures"] == failures == task.failures
        assert 0.0 <= retried.details["delay"] <= ceiling + 5e-4
        assert task.next_attempt_at is not None
        waited = task.next_attempt_at - retried.created_at
        assert -1e-6 <= waited <= ceiling + 1e-6
        assert waited == pytest.approx(retried.details["delay"], abs=6e-4)
        # Not claimable while retrying; maintain() makes it ready once due.
        assert task.status is S.RETRYING
        assert await store.claim("w1") == []
        await asyncio.sleep(max(0.0, task.next_attempt_at - await store.now()) + 0.01)
        assert (await store.maintain()).retries_ready == 1
        assert (await store.get_task(job.id, "flaky")).status is S.READY
    last = await claim_one(store)
    assert await store.fail(last.task.id, last.token, "boom 6") is S.FAILED
    task = await store.get_task(job.id, "flaky")
    assert (task.failures, task.attempts, task.last_error) == (6, 6, "boom 6")
    assert (await store.get_job(job.id)).status is JobStatus.FAILED
    rows = await result_rows(store, job.id)
    assert [(r["attempt"], r["outcome"]) for r in rows] == [(n, "failed") for n in range(1, 7)]


async def test_a_retry_is_not_made_ready_before_it_is_due(
    open_store: OpenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The delay is drawn at random: pin it to its ceiling so "not yet due" is certain.
    monkeypatch.setattr(outcomes_module, "retry_delay", backoff_ceiling)
    store = await open_store(backoff_base=60.0, backoff_cap=60.0)
    job = await store.create_job(spec(t("a", max_attempts=3)))
    claim = await claim_one(store)
    await store.fail(claim.task.id, claim.token, "later")
    assert (await store.maintain()).retries_ready == 0
    task = await store.get_task(job.id, "a")
    assert task.status is S.RETRYING
    assert task.next_attempt_at is not None
    assert task.next_attempt_at - await store.now() > 55.0
    assert await store.claim("w1") == []


async def test_a_non_retryable_failure_fails_at_once(store: Store) -> None:
    job = await store.create_job(spec(t("a", max_attempts=5), t("b", "a")))
    claim = await claim_one(store)
    assert await store.fail(claim.task.id, claim.token, "fatal", retryable=False) is S.FAILED
    task = await store.get_task(job.id, "a")
    assert (task.status, task.failures, task.next_attempt_at) == (S.FAILED, 1, None)
    assert await event_kinds(store, job.id, "a") == ["ready", "claimed", "failed"]
    assert (await store.get_task(job.id, "b")).status is S.UPSTREAM_FAILED


async def test_a_success_after_failures_releases_dependents(open_store: OpenStore) -> None:
    store = await open_store(backoff_base=0.01, backoff_cap=0.01)
    job = await store.create_job(spec(t("a", max_attempts=3), t("b", "a")))
    claim = await claim_one(store)
    await store.fail(claim.task.id, claim.token, "first try")
    await asyncio.sleep(0.03)
    await store.maintain()
    claim = await claim_one(store)
    await store.complete(claim.task.id, claim.token, {"ok": True})
    task = await store.get_task(job.id, "a")
    assert (task.status, task.attempts, task.failures, task.last_error) == (S.SUCCEEDED, 2, 1, None)
    assert (await store.get_task(job.id, "b")).status is S.READY


# -- checkpoints --------------------------------------------------------------------------------


async def test_only_the_latest_checkpoints_are_kept(open_store: OpenStore) -> None:
    store = await open_store(checkpoints_kept=3)
    job = await store.create_job(spec(t("a")))
    claim = await claim_one(store)
    for i in range(1, 7):
        await store.save_checkpoint(claim.task.id, claim.token, f"c{i}", {"step": i})
    kept = await store.list_checkpoints(claim.task.id)
    assert [(c.name, c.data) for c in kept] == [("c4", {"step": 4}), ("c5", {"step": 5}), ("c6", {"step": 6})]
    latest = await store.latest_checkpoint(claim.task.id)
    assert latest is not None
    assert (latest.data, latest.attempt) == ({"step": 6}, 1)
    assert (await event_kinds(store, job.id, "a")).count("checkpoint") == 6


async def test_a_checkpoint_over_the_size_limit_is_refused(open_store: OpenStore) -> None:
    store = await open_store(checkpoint_max_bytes=1024)
    await store.create_job(spec(t("a")))
    claim = await claim_one(store)
    await store.save_checkpoint(claim.task.id, claim.token, "small", {"blob": "x" * 900})
    with pytest.raises(CheckpointTooLarge, match="limit is 1024"):
        await store.save_checkpoint(claim.task.id, claim.token, "big", {"blob": "x" * 1100})
    # Multi-byte characters count as bytes, not characters.
    with pytest.raises(CheckpointTooLarge):
        await store.save_checkpoint(claim.task.id, claim.token, "wide", {"blob": "é" * 600})
    assert [c.name for c in await store.list_checkpoints(claim.task.id)] == ["small"]
    await store.complete(claim.task.id, claim.token)  # the lease survived the refusal


async def test_the_next_attempt_starts_from_the_latest_checkpoint(store: Store) -> None:
    job = await store.create_job(spec(t("a", max_attempts=3)))
    first = await claim_one(store)
    assert first.checkpoint is None
    await store.save_checkpoint(first.task.id, first.token, "half", {"done": 5})
    await store.save_checkpoint(first.task.id, first.token, "more", {"done": 7})
    await store.fail(first.task.id, first.token, "crashed")
    task = await store.get_task(job.id, "a")
    assert task.next_attempt_at is not None
    await asyncio.sleep(max(0.0, task.next_attempt_at - await store.now()) + 0.01)
    await store.maintain()
    second = await claim_one(store)
    assert second.attempt == 2
    assert second.checkpoint is not None
    assert (second.checkpoint.name, second.checkpoint.data, second.checkpoint.attempt) == (
        "more",
        {"done": 7},
        1,
    )


# -- progress and ETA ---------------------------------------------------------------------------


async def test_job_progress_is_leaf_progress_and_eta_needs_a_finished_task(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b"), t("c"), t("d", "a")))
    summary = await store.job_summary(job.id)
    assert (summary.progress, summary.eta_seconds) == (0.0, None)
    a, b = await store.claim("w1", limit=2)
    await store.report_progress(b.task.id, b.token, 0.5, "half way")
    summary = await store.job_summary(job.id)
    assert summary.progress == pytest.approx(0.5 / 4)
    assert summary.eta_seconds is None, "no task has finished: no estimate"
    progressed = await store.get_task(job.id, b.task.key)
    assert (progressed.progress, progressed.progress_message) == (0.5, "half way")
    await store.report_progress(b.task.id, b.token, 7.0)  # clamped to [0, 1]
    assert (await store.get_task(job.id, b.task.key)).progress == 1.0
    await store.report_progress(b.task.id, b.token, 0.5)
    await asyncio.sleep(0.05)
    await store.complete(a.task.id, a.token)
    summary = await store.job_summary(job.id)
    assert summary.progress == pytest.approx(1.5 / 4)
    assert summary.eta_seconds is not None
    assert summary.eta_seconds >= 0.0
    assert [e.details["fraction"] for e in await store.list_events(job.id) if e.kind == "progress"] == [
        0.5,
        1.0,
        0.5,
    ]


# -- concurrent completion ----------------------------------------------------------------------


async def test_a_job_ends_when_its_last_tasks_finish_at_the_same_moment(
    open_store: OpenStore, store: Store
) -> None:
    # Two workers completing a job's last two tasks at once may each see the other's task still running
    # (PostgreSQL, read committed); the job then ends at the latest on the next maintenance pass, which
    # the reaper runs every few hundred milliseconds, instead of serialising every completion on the job.
    first, second = await open_store(), await open_store()
    for _ in range(8):
        job = await store.create_job(spec(t("a"), t("b")))
        a, b = await store.claim("w1", limit=2)
        await asyncio.gather(first.complete(a.task.id, a.token), second.complete(b.task.id, b.token))
        await store.maintain()
        assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
        kinds = [e.kind for e in await store.list_events(job.id) if e.task_key is None]
        assert kinds.count("succeeded") == 1


async def test_a_split_task_ends_when_its_last_parts_finish_at_the_same_moment(
    open_store: OpenStore, store: Store
) -> None:
    first, second = await open_store(), await open_store()
    for _ in range(8):
        job = await store.create_job(spec(t("big"), t("after", "big")))
        await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
        a, b = await store.claim("w1", limit=2)
        await asyncio.gather(first.complete(a.task.id, a.token), second.complete(b.task.id, b.token))
        assert (await store.get_task(job.id, "big")).status is S.SUCCEEDED
        assert (await store.get_task(job.id, "after")).status is S.READY
        after = (await store.claim("w1"))[0]
        await store.complete(after.task.id, after.token)


@pytest.mark.postgres
async def test_idle_workers_are_woken_exactly_when_a_completion_frees_a_task(pg_database: str) -> None:
    """The single-statement success on PostgreSQL also sends the wake-up, and only when it freed a task."""
    settings = Settings(database=DatabaseSettings(url=pg_database))
    store = await Store.open(settings)
    wake = asyncio.Event()
    payloads: list[str | None] = []

    def on_note(payload: str | None) -> None:
        payloads.append(payload)
        wake.set()

    listener = ReadyListener(settings.database.url, on_note)
    listening = asyncio.create_task(listener.run())
    try:
        job = await store.create_job(spec(t("a"), t("b"), t("after", "a", "b"), t("after2", "a", "b")))
        a, b = await store.claim("w1", limit=2)
        await asyncio.wait_for(listener.connected.wait(), 10)
        await asyncio.sleep(0.1)
        wake.clear()
        payloads.clear()
        await store.complete(a.task.id, a.token)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(wake.wait(), 0.5)  # 'after' still waits on 'b'
        await store.complete(b.task.id, b.token)
        await asyncio.wait_for(wake.wait(), 5)
        assert (await statuses(store, job.id))["after"] is S.READY
        assert payloads == ["2"], "one notification, counting the tasks it made claimable"
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await store.aclose()


@pytest.mark.postgres
async def test_one_notification_wakes_as_many_idle_workers_as_tasks_became_ready(pg_database: str) -> None:
    """A process's workers share one LISTEN (``WakeHub``): three tasks made ready wake three of its ten
    idle workers, not ten; a worker that is not waiting is never woken."""
    settings = Settings(database=DatabaseSettings(url=pg_database))
    store = await Store.open(settings)
    hub = WakeHub.shared(settings.database.url)
    wakes = [asyncio.Event() for _ in range(10)]
    for wake in wakes:
        hub.join(wake)
    try:
        await asyncio.wait_for(hub.connected.wait(), 10)
        await asyncio.sleep(0.1)
        for wake in wakes:  # connecting woke everyone once (anything may have become ready): settle that
            hub.waiting(wake)
            hub.busy(wake)
            wake.clear()
        for wake in wakes[:9]:  # the tenth is busy
            hub.waiting(wake)
        assert not any(w.is_set() for w in wakes)
        before = hub.woken
        await store.create_job(spec(t("x"), t("y"), t("z")))
        await asyncio.wait_for(wakes[0].wait(), 5)
        await asyncio.sleep(0.3)
        assert [w.is_set() for w in wakes] == [True] * 3 + [False] * 7
        assert hub.woken - before == 3
    finally:
        for wake in wakes:
            await hub.leave(wake)
        await store.aclose()


@pytest.mark.postgres
async def test_a_notification_for_a_worker_busy_claiming_wakes_it_when_it_next_waits(
    pg_database: str,
) -> None:
    """A task made ready while the process's only worker is mid-claim (not waiting) is not left to the
    safety-net poll: the worker's next wait returns at once."""
    settings = Settings(database=DatabaseSettings(url=pg_database))
    store = await Store.open(settings)
    hub = WakeHub.shared(settings.database.url)
    wake = asyncio.Event()
    hub.join(wake)
    try:
        await asyncio.wait_for(hub.connected.wait(), 10)
        await asyncio.sleep(0.1)
        hub.waiting(wake)  # the wake-up owed for connecting
        hub.busy(wake)
        wake.clear()  # busy: not waiting
        await store.create_job(spec(t("x")))
        await asyncio.sleep(0.5)  # the notification arrives while it is busy
        assert not wake.is_set()
        hub.waiting(wake)
        assert wake.is_set(), "the owed wake-up is handed over as soon as it waits"
        wake.clear()
        hub.waiting(wake)  # nothing more is owed
        assert not wake.is_set()
        hub.busy(wake)
    finally:
        await hub.leave(wake)
        await store.aclose()


async def test_within_a_priority_the_longest_chain_is_claimed_first(store: Store) -> None:
    """Critical path first: of the ready tasks of one rank, the one with the most work waiting on it goes
    first, then the time ready decides; priority and criticality still come before either."""
    job = await store.create_job(
        spec(
            t("x"),
            t("short"),
            t("long"),
            t("long2", "long"),
            t("long3", "long2"),
            t("short2", "short"),
            t("urgent", priority="high"),
        )
    )
    order = [c.task.key for c in await store.claim("w1", limit=4)]
    assert order == ["urgent", "long", "short", "x"]
    by_key = {task.key: task for task in await store.list_tasks(job.id)}
    async with store.engine.connect() as conn:
        chains = dict((await conn.execute(sa.select(tasks.c.key, tasks.c.chain_rank))).all())
    assert {k: -chains[k] for k in by_key} == {
        "x": 1,
        "short": 2,
        "short2": 1,
        "long": 3,
        "long2": 2,
        "long3": 1,
        "urgent": 1,
    }


async def test_complete_and_claim_records_the_success_then_claims_for_the_freed_slot(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b"), t("c"), t("after", "a")))
    [a] = await store.claim("w1")
    assert a.task.key == "a"  # critical path first
    got = await store.complete_and_claim(a.task.id, a.token, {"n": 1}, "w1", (), 1)
    assert [c.task.key for c in got] == ["b"]
    state = await statuses(store, job.id)
    assert (state["a"], state["b"], state["c"], state["after"]) == (S.SUCCEEDED, S.RUNNING, S.READY, S.READY)
    assert await event_kinds(store, job.id, "a") == ["ready", "claimed", "succeeded"]
    assert (await store.task_outputs(job.id))["a"] == {"n": 1}
    # A stale token records nothing and claims nothing.
    with pytest.raises(LeaseLost):
        await store.complete_and_claim(got[0].task.id, "stale", {}, "w1", (), 2)
    assert (await statuses(store, job.id))["c"] is S.READY
    left = [got[0]]
    while left:
        c = left.pop()
        left += await store.complete_and_claim(c.task.id, c.token, {}, "w1", (), 1)
    assert set((await statuses(store, job.id)).values()) == {S.SUCCEEDED}
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_a_claimed_task_reads_as_the_same_task_a_listing_returns(store: Store) -> None:
    """PostgreSQL sends a claimed row as one JSON object; it must read exactly as the row does."""
    job = await store.create_job(
        spec(t("a", requires=["git"], timeout=30, description='it\'s "quoted"', priority="high"))
    )
    [claim] = await store.claim("w1", ["git"])
    [listed] = await store.list_tasks(job.id)
    fields = {f.name for f in dataclasses.fields(Task)} - {"depends_on", "parent_key", "result"}
    assert {f: getattr(claim.task, f) for f in fields} == {f: getattr(listed, f) for f in fields}
    assert {f: type(getattr(claim.task, f)) for f in fields} == {f: type(getattr(listed, f)) for f in fields}
    assert claim.task.requires == ("git",)
    assert claim.task.run["builtin"] == "noop"


async def test_a_completion_that_claims_from_another_job_still_decides_whether_its_job_ended(
    store: Store,
) -> None:
    """The fused statement asks whether the job is done only when its claim took nothing from that job;
    here every claim comes from the other job, so the question is asked each time."""
    a_job = await store.create_job(spec(t("a1"), t("a2")))
    a1, a2 = await store.claim("w1", limit=2)
    b_job = await store.create_job(spec(t("b1", priority="high"), t("b2", priority="high")))
    got = await store.complete_and_claim(a1.task.id, a1.token, {}, "w1", (), 1)
    assert [c.task.key for c in got] == ["b1"]
    assert (await store.get_job(a_job.id)).status is JobStatus.RUNNING, "a2 still runs"
    more = await store.complete_and_claim(a2.task.id, a2.token, {}, "w1", (), 1)
    assert [c.task.key for c in more] == ["b2"]
    assert (await store.get_job(a_job.id)).status is JobStatus.SUCCEEDED
    for c in (*got, *more):
        await store.complete_and_claim(c.task.id, c.token, {}, "w1", (), 1)
    assert (await store.get_job(b_job.id)).status is JobStatus.SUCCEEDED


async def test_complete_and_claim_claims_nothing_the_worker_cannot_run(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("gpu", requires=["gpu"])))
    [a] = await store.claim("w1")
    assert await store.complete_and_claim(a.task.id, a.token, {}, "w1", ["git"], 3) == []
    assert (await statuses(store, job.id)) == {"a": S.SUCCEEDED, "gpu": S.READY}


@pytest.mark.postgres
async def test_a_workers_last_maintenance_waits_for_a_pass_in_progress(pg_database: str) -> None:
    """A job left open by a completion race must be ended by the last worker to leave. If another pass
    holds the maintenance lock (it may have started before the last completion committed), the
    leaving worker's pass waits for it rather than skip; the reaper's own passes skip."""
    import psycopg

    from helixcode.store.maintenance import MAINTENANCE_LOCK_ID
    from helixcode.worker.wakeup import libpq_dsn

    store = await Store.open(Settings(database=DatabaseSettings(url=pg_database)))
    try:
        job = await store.create_job(spec(t("a")))
        [a] = await store.claim("w1")
        async with store.engine.begin() as conn:  # the task ends without ending its job: the race
            await conn.execute(
                sa.update(tasks).where(tasks.c.id == a.task.id).values(status="succeeded", lease_token=None)
            )
        async with await psycopg.AsyncConnection.connect(libpq_dsn(pg_database)) as other:
            await other.execute("SELECT pg_advisory_xact_lock(%s)", (MAINTENANCE_LOCK_ID,))
            assert (await store.maintain()).jobs_finished == 0  # skipped: the lock is taken
            waiting = asyncio.create_task(store.maintain(wait=True))
            await asyncio.sleep(0.3)
            assert not waiting.done()
            await other.commit()  # the other pass ends
            assert (await asyncio.wait_for(waiting, 10)).jobs_finished == 1
        assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    finally:
        await store.aclose()
