"""Job control on both databases: criticality pausing, pause/resume/retry/skip, cancel, splitting, events."""

from __future__ import annotations

import asyncio

import pytest

from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.models import Beat, Event, LeaseState
from helixcode.domain.records import WorkerInfo
from helixcode.domain.splitting import Part, split_balanced
from helixcode.errors import InvalidTransition, LeaseLost, SchedulerError
from helixcode.store.store import Store
from tests.helpers import run_to_end, spec, status_told, statuses, t

S = TaskStatus


def replay(events: list[Event]) -> dict[str, TaskStatus]:
    """Each task's status as the event log alone tells it (tasks start blocked unless a 'ready' says so)."""
    found: dict[str, TaskStatus] = {}
    for e in events:
        if e.task_key is not None and (told := status_told(e)) is not None:
            found[e.task_key] = told
    return found


async def assert_events_tell_every_status(store: Store, job_id: str) -> None:
    told = replay(await store.list_events(job_id))
    actual = await statuses(store, job_id)
    told_or_blocked = {key: told.get(key, S.BLOCKED) for key in actual}
    assert told_or_blocked == actual


# -- criticality pausing ------------------------------------------------------------------------


CRITICAL_JOB = (
    t("setup"),
    t("critical", "setup", criticality="critical"),
    t("after", "critical"),
    t("side", "setup", priority="low"),
    t("last", "after", "side"),
)


async def _fail_the_critical_task(store: Store) -> str:
    job = await store.create_job(spec(*CRITICAL_JOB))
    setup = (await store.claim("w1"))[0]
    await store.complete(setup.task.id, setup.token)
    crit = (await store.claim("w1"))[0]
    assert crit.task.key == "critical", "critical before the low-priority side task"
    assert await store.fail(crit.task.id, crit.token, "disk on fire", retryable=False) is S.FAILED
    return job.id


async def test_a_critical_failure_pauses_the_job_and_nothing_more_is_claimed(store: Store) -> None:
    job_id = await _fail_the_critical_task(store)
    job = await store.get_job(job_id)
    assert job.status is JobStatus.PAUSED
    assert job.pause_reason is not None
    assert "critical" in job.pause_reason
    assert "disk on fire" in job.pause_reason
    found = await statuses(store, job_id)
    assert found["after"] is S.UPSTREAM_FAILED
    assert found["last"] is S.UPSTREAM_FAILED
    assert found["side"] is S.READY
    assert await store.claim("w2", limit=10) == []
    assert not await store.has_work()
    assert [e.kind for e in await store.list_events(job_id) if e.task_key is None][-1] == "paused"


async def test_resume_with_retry_finishes_a_job_paused_by_a_critical_failure(store: Store) -> None:
    job_id = await _fail_the_critical_task(store)
    await store.resume_job(job_id, retry=["critical"])
    assert (await store.get_job(job_id)).status is JobStatus.RUNNING
    found = await statuses(store, job_id)
    assert found["critical"] is S.READY
    assert found["after"] is S.BLOCKED
    assert found["last"] is S.BLOCKED
    order = await run_to_end(store, job_id)
    assert order.index("critical") < order.index("after") < order.index("last")
    job = await store.get_job(job_id)
    assert (job.status, job.pause_reason) == (JobStatus.SUCCEEDED, None)
    critical = await store.get_task(job_id, "critical")
    assert (critical.status, critical.attempts) == (S.SUCCEEDED, 2)
    await assert_events_tell_every_status(store, job_id)


async def test_resume_with_skip_finishes_a_job_paused_by_a_critical_failure(store: Store) -> None:
    job_id = await _fail_the_critical_task(store)
    await store.resume_job(job_id, skip=["critical"])
    found = await statuses(store, job_id)
    assert found["critical"] is S.SKIPPED
    assert found["after"] is S.READY
    order = await run_to_end(store, job_id)
    assert "critical" not in order
    assert (await store.get_job(job_id)).status is JobStatus.SUCCEEDED
    assert (await store.get_task(job_id, "last")).status is S.SUCCEEDED
    await assert_events_tell_every_status(store, job_id)


async def test_a_critical_task_with_attempts_left_only_retries(store: Store) -> None:
    job = await store.create_job(spec(t("c", criticality="critical", max_attempts=3)))
    claim = (await store.claim("w1"))[0]
    assert await store.fail(claim.task.id, claim.token, "transient") is S.RETRYING
    assert (await store.get_job(job.id)).status is JobStatus.RUNNING


async def test_a_non_critical_failure_does_not_pause(store: Store) -> None:
    job = await store.create_job(spec(t("a", criticality="high"), t("b")))
    await run_to_end(store, job.id, fail=frozenset({"a"}))
    assert (await store.get_job(job.id)).status is JobStatus.FAILED


async def test_a_failed_job_resumes_only_with_retry_or_skip(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b", "a")))
    await run_to_end(store, job.id, fail=frozenset({"a"}))
    assert (await store.get_job(job.id)).status is JobStatus.FAILED
    with pytest.raises(SchedulerError, match="--retry"):
        await store.resume_job(job.id)
    with pytest.raises(SchedulerError, match="only a failed task"):
        await store.resume_job(job.id, retry=["b"])
    await store.resume_job(job.id, retry=["a"])
    assert await run_to_end(store, job.id) == ["a", "b"]
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


# -- pause, resume, cancel by hand --------------------------------------------------------------


async def test_pause_and_resume_by_hand(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b"), t("c", "a")))
    running = (await store.claim("w1"))[0]
    await store.pause_job(job.id, "lunch")
    await store.pause_job(job.id, "again")  # pausing a paused job is harmless
    paused = await store.get_job(job.id)
    assert (paused.status, paused.pause_reason) == (JobStatus.PAUSED, "lunch")
    assert await store.claim("w2", limit=5) == []
    # A task already running finishes, and its dependents become ready (but wait for the resume).
    await store.complete(running.task.id, running.token)
    assert (await store.get_job(job.id)).status is JobStatus.PAUSED
    assert await store.claim("w2", limit=5) == []
    await store.resume_job(job.id)
    assert sorted(await run_to_end(store, job.id)) == ["b", "c"]
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    kinds = [e.kind for e in await store.list_events(job.id) if e.task_key is None]
    assert kinds == ["created", "paused", "resumed", "succeeded"]
    with pytest.raises(SchedulerError):
        await store.pause_job(job.id)
    with pytest.raises(SchedulerError):
        await store.resume_job(job.id)


async def test_a_paused_job_whose_tasks_all_finished_ends_on_resume(store: Store) -> None:
    job = await store.create_job(spec(t("a")))
    claim = (await store.claim("w1"))[0]
    await store.pause_job(job.id)
    await store.complete(claim.task.id, claim.token)
    assert (await store.get_job(job.id)).status is JobStatus.PAUSED
    await store.resume_job(job.id)
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_cancel_stops_unfinished_tasks_and_the_running_worker_hears_it(store: Store) -> None:
    job = await store.create_job(spec(t("done"), t("running"), t("ready"), t("blocked", "running")))
    await store.register_worker(
        WorkerInfo(
            id="w1", name="w1", host="h", pid=1, version="0", capabilities=(), resources={}, concurrency=1
        )
    )
    running = (await store.claim("w1"))[0]
    assert running.task.key == "running", "critical path first: 'blocked' waits on it"
    first = (await store.claim("w1"))[0]
    assert first.task.key == "done"
    await store.complete(first.task.id, first.token)
    assert await store.cancel_job(job.id) == 3
    found = await statuses(store, job.id)
    assert found == {
        "done": S.SUCCEEDED,
        "running": S.CANCELLED,
        "ready": S.CANCELLED,
        "blocked": S.CANCELLED,
    }
    assert (await store.get_job(job.id)).status is JobStatus.CANCELLED
    states = await store.heartbeat([Beat("w1", {running.task.id: running.token})])
    assert states == {"w1": {running.task.id: LeaseState.CANCELLED}}
    with pytest.raises(LeaseLost):
        await store.complete(running.task.id, running.token)
    with pytest.raises(SchedulerError, match="already cancelled"):
        await store.cancel_job(job.id)
    with pytest.raises(SchedulerError):
        await store.resume_job(job.id)
    assert await store.claim("w2", limit=5) == []
    await assert_events_tell_every_status(store, job.id)


# -- splitting ----------------------------------------------------------------------------------


async def test_a_split_task_runs_as_children_and_its_dependents_wait_for_all(store: Store) -> None:
    job = await store.create_job(spec(t("gate"), t("big", "gate", priority="high"), t("after", "big")))
    items = {"a.py": 5.0, "b.py": 3.0, "c.py": 2.0, "d.py": 2.0}
    parts = split_balanced(items, 3)
    children = await store.split_task(job.id, "big", parts)
    assert children == ["big.1", "big.2", "big.3"]
    found = {task.key: task for task in await store.list_tasks(job.id)}
    assert found["big"].status is S.WAITING
    for key, part in zip(children, parts, strict=True):
        child = found[key]
        assert child.parent_key == "big"
        assert child.status is S.BLOCKED, "children copy the parent's dependencies"
        assert child.depends_on == ("gate",)
        assert child.run["items"] == list(part.items)
        assert child.run["builtin"] == "noop"
        assert child.weight == part.weight
        assert child.priority == found["big"].priority
    assert sorted(i for key in children for i in found[key].run["items"]) == sorted(items)

    gate = (await store.claim("w1"))[0]
    assert gate.task.key == "gate"
    await store.complete(gate.task.id, gate.token)
    claims = {c.task.key: c for c in await store.claim("w1", limit=10)}
    assert sorted(claims) == children, "the parent itself is never claimed"
    total = sum(p.weight for p in parts)
    done_weight = 0.0
    for key, part in zip(children, parts, strict=True):
        await store.complete(claims[key].task.id, claims[key].token)
        done_weight += part.weight
        big = await store.get_task(job.id, "big")
        after = await store.get_task(job.id, "after")
        if key != children[-1]:
            assert big.status is S.WAITING
            assert big.progress == pytest.approx(done_weight / total)
            assert after.status is S.BLOCKED
        else:
            assert (big.status, big.progress) == (S.SUCCEEDED, 1.0)
            assert after.status is S.READY
    assert await run_to_end(store, job.id) == ["after"]
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    await assert_events_tell_every_status(store, job.id)


async def test_job_progress_weights_split_children(store: Store) -> None:
    job = await store.create_job(spec(t("big"), t("small")))
    await store.split_task(job.id, "big", [Part(("x",), 3.0), Part(("y",), 1.0)])
    for claim in await store.claim("w1", limit=5):
        if claim.task.key == "big.1":
            await store.complete(claim.task.id, claim.token)
        else:
            await store.report_progress(claim.task.id, claim.token, 0.5)
    # Leaves: big.1 (3.0, done), big.2 (1.0, half), small (1.0, half); the parent is not a leaf.
    summary = await store.job_summary(job.id)
    assert summary.progress == pytest.approx((3.0 + 0.5 + 0.5) / 5.0)


async def test_only_a_task_not_yet_started_can_be_split(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b")))
    claim = (await store.claim("w1"))[0]
    with pytest.raises(SchedulerError, match="not yet started"):
        await store.split_task(job.id, claim.task.key, [Part(("x",), 1.0)])
    with pytest.raises(SchedulerError, match="no parts"):
        await store.split_task(job.id, "b", [])
    await store.split_task(job.id, "b", [Part(("x",), 1.0)])
    with pytest.raises(SchedulerError):
        await store.split_task(job.id, "b", [Part(("y",), 1.0)])


async def test_a_failed_part_fails_the_split_task_and_its_dependents(store: Store) -> None:
    job = await store.create_job(spec(t("big"), t("after", "big")))
    await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
    await run_to_end(store, job.id, fail=frozenset({"big.1"}))
    found = await statuses(store, job.id)
    assert found == {"big": S.FAILED, "after": S.UPSTREAM_FAILED, "big.1": S.FAILED, "big.2": S.SUCCEEDED}
    assert (await store.get_job(job.id)).status is JobStatus.FAILED


async def test_retrying_a_failed_part_lets_the_split_task_finish(store: Store) -> None:
    job = await store.create_job(spec(t("big", criticality="critical"), t("after", "big")))
    await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
    await run_to_end(store, job.id, fail=frozenset({"big.1"}))
    assert (await store.get_job(job.id)).status is JobStatus.PAUSED
    await store.resume_job(job.id, retry=["big.1"])
    assert await run_to_end(store, job.id) == ["big.1", "after"]
    found = await statuses(store, job.id)
    assert found == {"big": S.SUCCEEDED, "after": S.SUCCEEDED, "big.1": S.SUCCEEDED, "big.2": S.SUCCEEDED}
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def test_skipping_a_failed_part_lets_the_split_task_finish(store: Store) -> None:
    job = await store.create_job(spec(t("big"), t("after", "big")))
    await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
    await run_to_end(store, job.id, fail=frozenset({"big.1"}))
    assert (await store.get_job(job.id)).status is JobStatus.FAILED
    await store.resume_job(job.id, skip=["big.1"])
    assert (await store.get_task(job.id, "big")).status is S.SUCCEEDED
    assert await run_to_end(store, job.id) == ["after"]
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    await assert_events_tell_every_status(store, job.id)


async def test_retrying_the_dependency_of_a_split_task_revives_its_parts(store: Store) -> None:
    job = await store.create_job(spec(t("gate"), t("big", "gate"), t("after", "big")))
    await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
    await run_to_end(store, job.id, fail=frozenset({"gate"}))
    found = await statuses(store, job.id)
    assert found["big.1"] is S.UPSTREAM_FAILED
    assert found["after"] is S.UPSTREAM_FAILED
    assert found["big"].terminal
    await store.resume_job(job.id, retry=["gate"])
    assert await run_to_end(store, job.id) == ["gate", "big.1", "big.2", "after"]
    assert set((await statuses(store, job.id)).values()) == {S.SUCCEEDED}
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    await assert_events_tell_every_status(store, job.id)


async def test_skip_refuses_a_finished_task(store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b")))
    claim = (await store.claim("w1"))[0]
    await store.complete(claim.task.id, claim.token)
    with pytest.raises(InvalidTransition):
        await store.resume_job(job.id, skip=[claim.task.key])


# -- events -------------------------------------------------------------------------------------


async def test_every_transition_writes_an_event(store: Store) -> None:
    job = await store.create_job(
        spec(
            t("a", max_attempts=2),
            t("b", "a"),
            t("c", "b", criticality="critical", max_attempts=1),
            t("d", "c"),
            t("e", "a", priority="low"),
            t("f", "e"),
        )
    )
    await store.split_task(job.id, "e", [Part(("1",), 1.0), Part(("2",), 2.0)])
    claim = (await store.claim("w1"))[0]
    await store.fail(claim.task.id, claim.token, "flaky")
    await assert_events_tell_every_status(store, job.id)
    task = await store.get_task(job.id, "a")
    assert task.next_attempt_at is not None
    await asyncio.sleep(max(0.0, task.next_attempt_at - await store.now()) + 0.01)
    await store.maintain()
    await assert_events_tell_every_status(store, job.id)
    await run_to_end(store, job.id, fail=frozenset({"c"}))
    await assert_events_tell_every_status(store, job.id)
    assert (await store.get_job(job.id)).status is JobStatus.PAUSED
    await store.resume_job(job.id, skip=["c"])
    await assert_events_tell_every_status(store, job.id)
    await run_to_end(store, job.id)
    await assert_events_tell_every_status(store, job.id)
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    job_events = [e.kind for e in await store.list_events(job.id) if e.task_key is None]
    assert job_events == ["created", "paused", "resumed", "succeeded"]


async def test_a_critical_task_that_fails_through_a_part_pauses_its_job(store: Store) -> None:
    """A critical split parent fails because a part failed: the job pauses, as when the critical task
    fails itself (the same for a planner whose planned subtask fails)."""
    job = await store.create_job(spec(t("big", criticality="critical"), t("other")))
    await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
    claims = {c.task.key: c for c in await store.claim("w1", limit=10)}
    part = claims["big.1"]
    await store.fail(part.task.id, part.token, "the part broke", retryable=False)
    assert (await store.get_task(job.id, "big")).status is S.FAILED
    paused = await store.get_job(job.id)
    assert paused.status is JobStatus.PAUSED
    assert "critical task 'big' failed" in (paused.pause_reason or "")
