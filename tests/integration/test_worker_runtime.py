"""The worker runtime in-process, on both databases: timeouts, checkpoint resume, retries, cancel, fencing."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from helixcode.config import Settings, TasksSettings, WorkersSettings
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.models import Beat, Claim, LeaseState
from helixcode.store.database import sqlite_path
from helixcode.store.store import Store
from helixcode.store.tables import locks, tasks
from helixcode.worker.runtime import Worker, WorkerOptions, WorkerStats
from tests.helpers import result_rows, spec

S = TaskStatus
MakeWorker = Callable[..., Awaitable[Worker]]
Spawn = Callable[[Worker], "asyncio.Task[WorkerStats]"]


async def wait_for(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


@pytest.fixture
async def make_worker(settings: Settings) -> AsyncIterator[MakeWorker]:
    """A Worker on its own Store (as a separate process would have), polling fast."""
    stores: list[Store] = []

    async def make(
        concurrency: int = 1, reaper: bool = True, batch_acks: bool | None = None, **tasks_overrides: Any
    ) -> Worker:
        worker_settings = Settings(
            database=settings.database,
            tasks=TasksSettings(**{**settings.tasks.model_dump(), **tasks_overrides}),
            workers=WorkersSettings(poll_interval=0.1, drain_timeout=0.0),
        )
        store = await Store.open(worker_settings)
        stores.append(store)
        options = WorkerOptions(
            concurrency=concurrency,
            exit_when_idle=True,
            detect=False,
            sample_gpu=False,
            reaper=reaper,
            batch_acks=batch_acks,
        )
        return Worker(store, worker_settings, options)

    yield make
    for store in stores:
        await store.aclose()


async def run_worker(worker: Worker) -> WorkerStats:
    async with asyncio.timeout(30):
        return await worker.run()


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[[Worker], asyncio.Task[WorkerStats]]]:
    """Run a worker in the background; one still running when the test ends is stopped and awaited."""
    started: list[tuple[Worker, asyncio.Task[WorkerStats]]] = []

    def start(worker: Worker) -> asyncio.Task[WorkerStats]:
        task = asyncio.create_task(run_worker(worker))
        started.append((worker, task))
        return task

    yield start
    for worker, task in started:
        if not task.done():
            worker.stop()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_task_over_its_timeout_fails(store: Store, make_worker: MakeWorker) -> None:
    job = await store.create_job(
        spec({"id": "slow", "run": {"builtin": "sleep", "seconds": 30}, "timeout": 0.4, "max_attempts": 1})
    )
    started = time.monotonic()
    stats = await run_worker(await make_worker())
    assert time.monotonic() - started < 10
    task = await store.get_task(job.id, "slow")
    assert task.status is S.FAILED
    assert task.last_error == "timed out after 0.4s"
    assert (stats.claimed, stats.failed, stats.succeeded) == (1, 1, 0)
    [row] = await result_rows(store, job.id)
    assert row["outcome"] == "failed"
    assert 0.35 <= row["finished_at"] - row["started_at"] < 10, "stopped at the timeout, not after 30 s"
    assert (await store.get_job(job.id)).status is JobStatus.FAILED


async def test_a_timed_out_sleep_resumes_from_its_checkpoint(store: Store, make_worker: MakeWorker) -> None:
    job = await store.create_job(
        # Checkpoints every 0.5 s; a timeout of 1.1 s leaves each attempt time for its first one even on
        # a loaded machine (0.8 s did not, under a parallel test run).
        spec({"id": "nap", "run": {"builtin": "sleep", "seconds": 1.6}, "timeout": 1.1, "max_attempts": 6})
    )
    stats = await run_worker(await make_worker())
    task = await store.get_task(job.id, "nap")
    assert task.status is S.SUCCEEDED
    assert task.attempts >= 2
    rows = await result_rows(store, job.id)
    assert [(r["outcome"], r["error"]) for r in rows[:-1]] == [("failed", "timed out after 1.1s")] * (
        len(rows) - 1
    )
    last = rows[-1]
    assert last["outcome"] == "succeeded"
    assert last["output"]["slept"] == 1.6
    # Every attempt is shorter than the whole sleep: only resuming from checkpoints can finish it.
    assert 0.0 < last["output"]["resumed_from"] < 1.6
    # The attempts checkpointed as they went (on a loaded machine an attempt may time out before its
    # first 0.5 s chunk ends, so not necessarily every one), and the last resumed from one of them.
    checkpointed = {e.attempt for e in await store.list_events(job.id) if e.kind == "checkpoint"}
    assert checkpointed
    assert checkpointed <= set(range(1, task.attempts + 1))
    assert min(checkpointed) < task.attempts
    assert stats.succeeded == 1


async def test_a_failing_then_succeeding_task_retries_with_backoff(
    store: Store, make_worker: MakeWorker
) -> None:
    job = await store.create_job(
        spec(
            {"id": "flaky", "run": {"builtin": "fail", "fail_attempts": 2}, "max_attempts": 3},
            {"id": "after", "run": {"builtin": "noop"}, "depends_on": ["flaky"]},
        )
    )
    stats = await run_worker(await make_worker())
    assert (stats.failed, stats.succeeded) == (2, 2)
    flaky = await store.get_task(job.id, "flaky")
    assert (flaky.status, flaky.attempts, flaky.failures) == (S.SUCCEEDED, 3, 2)
    cfg = store.settings.tasks
    retried = [e for e in await store.list_events(job.id) if e.kind == "retried"]
    assert [e.details["failures"] for e in retried] == [1, 2]
    for e in retried:
        ceiling = min(cfg.backoff_cap, cfg.backoff_base * 2 ** (e.details["failures"] - 1))
        assert 0.0 <= e.details["delay"] <= ceiling + 5e-4
    rows = await result_rows(store, job.id)
    assert [(r["key"], r["attempt"], r["outcome"]) for r in rows] == [
        ("flaky", 1, "failed"),
        ("flaky", 2, "failed"),
        ("flaky", 3, "succeeded"),
        ("after", 1, "succeeded"),
    ]
    assert rows[2]["output"] == {"failed_first": 2}
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_cancelling_the_job_stops_a_running_task(
    store: Store, make_worker: MakeWorker, spawn: Spawn
) -> None:
    job = await store.create_job(spec({"id": "long", "run": {"builtin": "sleep", "seconds": 60}}))
    worker = await make_worker()
    running = spawn(worker)

    async def is_running() -> bool:
        return (await store.get_task(job.id, "long")).status is S.RUNNING

    await wait_for(is_running)
    await store.cancel_job(job.id)
    started = time.monotonic()
    stats = await running
    assert time.monotonic() - started < 5, "the next heartbeat sees the cancel"
    assert (stats.abandoned, stats.succeeded, stats.failed) == (1, 0, 0)
    assert (await store.get_task(job.id, "long")).status is S.CANCELLED
    assert await result_rows(store, job.id) == []


async def test_workers_of_one_process_share_one_heartbeat_and_one_reaper(
    settings: Settings, store: Store
) -> None:
    """Three workers in one process, leases of 1.5 s renewed every 0.25 s: one round trip per beat for
    all three (not three), every lease held long past its first expiry, and a cancel seen by all. They
    stand for the reaper's leadership once, as the process, which gives it up when the last one stops."""
    beat_settings = Settings(
        database=settings.database,
        tasks=TasksSettings(**{**settings.tasks.model_dump(), "lease_ttl": 1.5, "heartbeat_interval": 0.25}),
        workers=WorkersSettings(poll_interval=0.1, drain_timeout=0.0),
    )
    shared = await Store.open(beat_settings)
    beats: list[list[Beat]] = []
    heartbeat = shared.heartbeat

    async def counted(batch: Sequence[Beat], *args: Any, **kwargs: Any) -> dict[str, dict[int, LeaseState]]:
        beats.append(list(batch))
        return await heartbeat(batch, *args, **kwargs)

    shared.heartbeat = counted  # type: ignore[method-assign]
    job = await store.create_job(
        spec(*({"id": f"long{i}", "run": {"builtin": "sleep", "seconds": 60}} for i in range(3)))
    )
    options = WorkerOptions(concurrency=1, exit_when_idle=True, detect=False, sample_gpu=False)
    fleet = [Worker(shared, beat_settings, options) for _ in range(3)]
    running = [asyncio.create_task(w.run()) for w in fleet]
    try:

        async def all_running() -> bool:
            return all(t.status is S.RUNNING for t in await store.list_tasks(job.id))

        await wait_for(all_running)
        beats.clear()
        await asyncio.sleep(3.0)  # two lease lifetimes: held only if renewed
        assert await all_running()
        assert 6 <= len(beats) <= 14, f"{len(beats)} round trips in 3 s at one per 0.25 s"
        assert all(sorted(b.worker_id for b in batch) == sorted(w.id for w in fleet) for batch in beats)
        assert all(len(b.leases) == 1 and b.status == "active" for batch in beats for b in batch)
        reaper = fleet[0].reaper
        assert reaper is not None
        assert all(w.reaper is reaper for w in fleet)
        assert reaper.leading
        assert reaper.owner not in {w.id for w in fleet}
        await store.cancel_job(job.id)
        stats = await asyncio.wait_for(asyncio.gather(*running), 5)
        assert [s.abandoned for s in stats] == [1, 1, 1]
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.select(locks.c.owner))).all() == [], "leadership given up"
    finally:
        for worker in fleet:
            worker.stop()
        await asyncio.gather(*running, return_exceptions=True)
        await shared.aclose()


async def test_a_worker_whose_lease_was_taken_stops_and_its_result_is_not_recorded(
    store: Store, make_worker: MakeWorker, spawn: Spawn
) -> None:
    job = await store.create_job(spec({"id": "contested", "run": {"builtin": "sleep", "seconds": 60}}))
    worker = await make_worker(reaper=False)  # the test plays the reaper, so it knows when it ran
    running = spawn(worker)

    async def is_running() -> bool:
        return (await store.get_task(job.id, "contested")).status is S.RUNNING

    await wait_for(is_running)

    # The worker stalls (as far as the database can tell): its lease runs out and another takes over.
    # Under load its heartbeat may land in between: renewing the lease before the requeue (then the
    # test expires it again), or telling the worker its lease is lost before the thief's claim (then
    # the worker, free again, may claim the next attempt itself, and the thief takes the one after).
    taken: list[Claim] = []

    async def taken_over() -> bool:
        async with store._write() as conn:
            await conn.execute(
                tasks.update().where(tasks.c.job_id == job.id).values(lease_expires_at=tasks.c.started_at - 1)
            )
        if (await store.maintain()).requeued == 1:
            taken.extend(await store.claim("thief"))
        return bool(taken)

    await wait_for(taken_over, seconds=10)
    [thief] = taken
    assert thief.attempt >= 2

    async def worker_gave_up() -> bool:
        return worker.stats.abandoned == thief.attempt - 1

    await wait_for(worker_gave_up, seconds=5)
    await store.complete(thief.task.id, thief.token, {"by": "thief"})
    stats = await running
    assert (stats.succeeded, stats.abandoned) == (0, thief.attempt - 1)
    rows = await result_rows(store, job.id)
    assert [(r["attempt"], r["worker_id"], r["output"]) for r in rows] == [
        (thief.attempt, "thief", {"by": "thief"})
    ]
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_a_stopped_worker_hands_its_task_back_unfailed(
    store: Store, make_worker: MakeWorker, spawn: Spawn
) -> None:
    job = await store.create_job(spec({"id": "long", "run": {"builtin": "sleep", "seconds": 60}}))
    worker = await make_worker()
    running = spawn(worker)

    async def is_running() -> bool:
        return (await store.get_task(job.id, "long")).status is S.RUNNING

    await wait_for(is_running)
    worker.stop()
    stats = await running
    assert stats.handed_back == 1
    task = await store.get_task(job.id, "long")
    assert (task.status, task.failures, task.lease_owner) == (S.READY, 0, None)
    requeued = [e for e in await store.list_events(job.id) if e.kind == "requeued"]
    assert [e.details["reason"] for e in requeued] == ["worker stopping"]


@pytest.mark.parametrize("batch_acks", [False, True], ids=["one-by-one", "batched"])
async def test_a_lost_lease_stops_an_executing_attempt_but_not_one_writing_its_outcome(
    store: Store, make_worker: MakeWorker, batch_acks: bool
) -> None:
    """The heartbeat cancels attempts whose lease is gone. Once an attempt's executor has finished, its
    lease may be gone only because its own success was just written (seen in CI: the runner was
    cancelled after that write and its success went uncounted): the fenced write decides instead.
    Here the heartbeat's verdict arrives exactly while the finished attempt writes its success."""
    await store.create_job(
        spec(
            {"id": "busy", "run": {"builtin": "sleep", "seconds": 30}},
            {"id": "done", "run": {"builtin": "noop"}},
        )
    )
    worker = await make_worker(concurrency=2, batch_acks=batch_acks)
    busy, done = await worker.store.claim(worker.id, limit=2)
    lost = {busy.task.id: LeaseState.LOST, done.task.id: LeaseState.LOST}
    name = "complete_many_and_claim" if batch_acks else "complete_and_claim"
    write = getattr(worker.store, name)

    async def heartbeat_meanwhile(*args: Any, **kwargs: Any) -> Any:
        worker.lease_states(lost)
        return await write(*args, **kwargs)

    setattr(worker.store, name, heartbeat_meanwhile)
    worker._start(busy)
    await asyncio.sleep(0.1)  # the sleep is under way before the other attempt finishes
    worker._start(done)
    busy_runner, done_runner = (worker._running[c.task.id].runner for c in (busy, done))
    await asyncio.wait([busy_runner, done_runner], timeout=10)
    assert busy_runner.cancelled()
    assert not done_runner.cancelled()
    assert worker.stats.succeeded == 1
    assert worker.stats.abandoned == 1


@pytest.mark.parametrize("outcome", ["fail", "complete"])
async def test_a_stop_lets_an_attempt_writing_its_outcome_finish_the_write(
    store: Store, make_worker: MakeWorker, outcome: str
) -> None:
    """A stop (drain timeout 0) cancels what is still executing and hands it back; an attempt whose
    executor is done and whose outcome is being written is not cancelled mid-write (seen in CI: a
    failure's write was cancelled by the drain and the task stayed running under a dead lease)."""
    run = {"shell": "exit 3"} if outcome == "fail" else {"builtin": "noop"}
    job = await store.create_job(spec({"id": "t", "run": run, "max_attempts": 5}))
    worker = await make_worker()
    (claim,) = await worker.store.claim(worker.id, limit=1)
    write = getattr(worker.store, outcome)
    writing, release = asyncio.Event(), asyncio.Event()

    async def slow_write(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        await release.wait()  # the stop arrives while the write is under way
        return await write(*args, **kwargs)

    setattr(worker.store, outcome, slow_write)
    worker.stop()
    worker._start(claim)
    await asyncio.wait_for(writing.wait(), 10)
    drain = asyncio.create_task(worker._drain())
    await asyncio.sleep(0.2)
    assert not drain.done(), "the drain waits for the write"
    release.set()
    await asyncio.wait_for(drain, 10)
    task = await store.get_task(job.id, "t")
    assert task.status is (S.RETRYING if outcome == "fail" else S.SUCCEEDED)
    assert task.lease_expires_at is None


async def test_a_follow_up_claimed_as_the_worker_stops_is_handed_back(
    store: Store, make_worker: MakeWorker
) -> None:
    """The stop arrives while a success is written together with the next claim (``complete_and_claim``):
    the success lands, and the task it claimed is handed back rather than left under the stopped
    worker's lease."""
    job = await store.create_job(
        spec({"id": "a", "run": {"builtin": "noop"}}, {"id": "b", "run": {"builtin": "sleep", "seconds": 30}})
    )
    worker = await make_worker()
    (claim,) = await worker.store.claim(worker.id, limit=1)
    assert claim.task.key == "a"
    write = worker.store.complete_and_claim
    writing, release = asyncio.Event(), asyncio.Event()

    async def slow_write(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        await release.wait()
        return await write(*args, **kwargs)

    worker.store.complete_and_claim = slow_write  # type: ignore[method-assign]
    worker._start(claim)
    await asyncio.wait_for(writing.wait(), 10)
    worker.stop()
    drain = asyncio.create_task(worker._drain())
    release.set()
    await asyncio.wait_for(drain, 10)
    assert not worker._running
    done, follow = await store.get_task(job.id, "a"), await store.get_task(job.id, "b")
    assert done.status is S.SUCCEEDED
    assert (follow.status, follow.lease_owner, follow.failures) == (S.READY, None, 0)
    assert worker.stats.handed_back == 1


async def test_a_workdir_missing_on_this_host_is_retried_not_failed(
    store: Store,
    make_worker: MakeWorker,
    spawn: Callable[[Worker], asyncio.Task[WorkerStats]],
    tmp_path: Path,
) -> None:
    """The job's folder lives on another host: this worker's attempt fails with a message naming the
    folder and the host, and the task is retried (a worker that has the folder then runs it)."""
    elsewhere = tmp_path / "only-on-another-host"
    job = await store.create_job(
        spec({"id": "sh", "run": {"shell": "pwd"}, "max_attempts": 20}), workdir=str(elsewhere)
    )
    here = await make_worker(backoff_base=0.2, backoff_cap=0.2)
    running = spawn(here)

    async def failed_once() -> bool:
        return (await store.get_task(job.id, "sh")).failures >= 1

    await wait_for(failed_once, 20)
    here.stop()
    await running
    task = await store.get_task(job.id, "sh")
    # Waiting for its retry, or handed back by the stop if it had started one: never failed for good.
    assert task.status in (S.RETRYING, S.READY), "a host without the folder does not fail the task"
    assert f"{elsewhere} does not exist on host {socket.gethostname()}" in (task.last_error or "")
    elsewhere.mkdir()  # "another host", one with the folder, claims it
    await run_worker(await make_worker(backoff_base=0.2, backoff_cap=0.2))
    task = await store.get_task(job.id, "sh")
    assert task.status is S.SUCCEEDED
    assert (await store.task_outputs(job.id))["sh"]["stdout"].strip() == str(elsewhere)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("held", [0.6, 8.0])
async def test_a_stopping_worker_marks_itself_stopped_past_a_locked_database(
    settings: Settings, caplog: pytest.LogCaptureFixture, held: float
) -> None:
    """Another process holds SQLite's write lock as the worker stops: the worker retries marking itself
    stopped for a few seconds (0.6 s: it gets through), then gives up and says so in the log (8 s)."""
    database = settings.database.model_copy(update={"busy_timeout_ms": 50})
    worker_settings = Settings(
        database=database, workers=WorkersSettings(poll_interval=0.1, drain_timeout=0.0)
    )
    path = sqlite_path(database.url)
    assert path is not None
    async with await Store.open(worker_settings) as store:
        options = WorkerOptions(concurrency=1, detect=False, sample_gpu=False, reaper=False)
        worker = Worker(store, worker_settings, options)
        running = asyncio.create_task(run_worker(worker))

        async def registered() -> bool:
            return any(w.id == worker.id for w in await store.list_workers())

        await wait_for(registered)
        neighbour = sqlite3.connect(path, isolation_level=None)
        try:
            neighbour.execute("BEGIN IMMEDIATE")  # the write lock, as a busy neighbour holds it
            worker.stop()
            await asyncio.sleep(held)
            neighbour.execute("COMMIT")
        finally:
            neighbour.close()
        await running
        [info] = [w for w in await store.list_workers() if w.id == worker.id]
    failed = [r for r in caplog.records if getattr(r, "action", "") == "worker.deregister_failed"]
    if held < 5:
        assert info.status == "stopped"
        assert not failed
    else:
        assert info.status != "stopped"
        assert "database is locked" in failed[0].getMessage()
