"""The state machine's table (``helixcode.domain.states.TRANSITIONS``) against what the store does, on
both databases, in both directions.

Scenarios drive the store the way workers, the reaper and people do: claim and complete (one at a time,
in a batch, complete-and-claim), fail with retries then for good, lease expiry and requeue, hand back,
cancel, pause and resume (a job, and ready tasks held for lack of capacity), retry and skip, split
parents and their parts, a task expanded into planned subtasks, upstream failures, a critical failure
pausing its job. Every store call is one step, and every step's moves of every task are recorded.

Where the moves are read from: a step is one store call, usually one transaction, and one transaction
may move a task twice (``resume_job --skip`` takes a failed split parent to ``waiting`` and then to
``succeeded``; an upstream-failed dependent to ``blocked``, then ``ready``). Task rows read before and
after the step would show ``failed -> succeeded``, a move nobody made. The ``events`` table has every
intermediate move, in order, but it is the store's own account, written beside the rows. So both: the
events give each task's path through the step, and the row read after the step must be where that path
ends; a row that moved without an event is recorded from the rows, and fails the test.

Then: every recorded move must be in the table, and every entry of the table must be made by some
scenario, except those listed below with the reason. The lists are checked too: an entry that the store
starts to make (or stops making), or that leaves the table, fails the test until the list is updated.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import pytest
import sqlalchemy as sa

from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.records import WorkerInfo
from helixcode.domain.splitting import Part
from helixcode.domain.states import TRANSITIONS
from helixcode.errors import InvalidTransition
from helixcode.store.rows import event_from_row
from helixcode.store.store import Store
from helixcode.store.tables import events, tasks
from tests.helpers import OpenStore, run_to_end, spec, status_told, t

S = TaskStatus
T = TypeVar("T")
Move = tuple[TaskStatus, TaskStatus]

TABLE: frozenset[Move] = frozenset((old, new) for old, targets in TRANSITIONS.items() for new in targets)

#: Entries of the table that no store path makes but that belong in it all the same, and why.
DEFENSIVE: dict[Move, str] = {}

# Disagreements between the table and the store, reported and awaiting a decision (the table or the store
# changes; neither is this test's to change). Empty both once it is taken.

#: Moves the store makes that the table does not allow.
MADE_BUT_NOT_IN_TABLE: dict[Move, str] = {}
#: Entries of the table that no store path makes: a task is paused only for lack of capacity and only
#: from ready (WorkerOps._degrade); pausing a job moves none of its tasks; a capacity-paused task returns
#: to ready; only a ready or blocked task can be split; cancel_job leaves terminal tasks alone.
IN_TABLE_BUT_NEVER_MADE: dict[Move, str] = {
    (S.BLOCKED, S.PAUSED): "WorkerOps._degrade pauses ready tasks only",
    (S.RUNNING, S.PAUSED): "pause_job pauses the job, not its running tasks",
    (S.RETRYING, S.PAUSED): "WorkerOps._degrade pauses ready tasks only",
    (S.WAITING, S.PAUSED): "pause_job pauses the job, not its waiting split parents",
    (S.PAUSED, S.BLOCKED): "a capacity-paused task was ready, and returns to ready",
    (S.PAUSED, S.WAITING): "split_task refuses a paused task",
    (S.UPSTREAM_FAILED, S.CANCELLED): "cancel_job cancels unfinished tasks; upstream_failed is terminal",
}


# -- recording ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Moved:
    old: TaskStatus
    new: TaskStatus
    task: str
    by: str  # the store method of the step
    scenario: str
    evented: bool  # an event of its own says so (else only the task's row does)

    def __str__(self) -> str:
        how = "" if self.evented else ", no event"
        return f"{self.old} -> {self.new}: {self.task} by {self.by} in {self.scenario}{how}"


@dataclass
class Recorder:
    """Reads every task's status after each step, and the events the step wrote. Every store that writes
    in these scenarios is watched, so what one step leaves is what the next one starts from."""

    reader: Store
    scenario: str = ""
    moves: list[Moved] = field(default_factory=list)
    steps: int = 0
    _cursor: int = 0
    _last: dict[int, tuple[str, TaskStatus]] = field(default_factory=dict)

    async def step(self, name: str, call: Coroutine[Any, Any, T]) -> T:
        try:
            return await call
        finally:
            after = await self._statuses()
            self._note(name, self._last, after, await self._task_events())
            self._last = after
            self.steps += 1

    async def _statuses(self) -> dict[int, tuple[str, TaskStatus]]:
        async with self.reader._read() as conn:
            rows = await conn.execute(sa.select(tasks.c.id, tasks.c.job_id, tasks.c.key, tasks.c.status))
            return {i: (f"{job[:4]}/{key}", S(status)) for i, job, key, status in rows.all()}

    async def _task_events(self) -> dict[int, list[TaskStatus]]:
        """Each task's moves as this step's events tell them, in order."""
        stmt = sa.select(events).where(events.c.id > self._cursor).order_by(events.c.id)
        async with self.reader._read() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        told: dict[int, list[TaskStatus]] = {}
        for row in rows:
            self._cursor = max(self._cursor, row["id"])
            status = status_told(event_from_row(row, None)) if row["task_id"] is not None else None
            if status is not None:
                told.setdefault(row["task_id"], []).append(status)
        return told

    def _note(
        self,
        name: str,
        before: Mapping[int, tuple[str, TaskStatus]],
        after: Mapping[int, tuple[str, TaskStatus]],
        told: Mapping[int, list[TaskStatus]],
    ) -> None:
        for task_id, (key, row_status) in after.items():
            path = list(told.get(task_id, []))
            if task_id in before:
                status = before[task_id][1]
            else:  # created by this step: ready (its first event says so) or blocked (no event)
                status = path.pop(0) if path[:1] == [S.READY] else S.BLOCKED
            for new in path:
                if new != status:
                    self.moves.append(Moved(status, new, key, name, self.scenario, evented=True))
                    status = new
            if row_status != status:
                self.moves.append(Moved(status, row_status, key, name, self.scenario, evented=False))


class Watched:
    """A store whose every coroutine method runs as one recorded step."""

    def __init__(self, store: Store, recorder: Recorder) -> None:
        self._store, self._recorder = store, recorder

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def step(*args: Any, **kwargs: Any) -> Any:
            return await self._recorder.step(name, method(*args, **kwargs))

        return step


# -- scenarios ----------------------------------------------------------------------------------


@dataclass
class Stores:
    main: Store  # the test's settings: 5 s leases, fast backoff, no capacity floor
    leases: Store  # 0.1 s leases, a task failed on its second lost lease
    capacity: Store  # a capacity floor of one worker slot: below it, tasks under 'normal' wait


async def poll(check: Callable[[], Awaitable[bool]], what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"not in {within} s: {what}"
        await asyncio.sleep(0.02)


async def successes(s: Stores) -> None:
    """One at a time, in a batch, and complete-and-claim; dependents freed."""
    store = s.main
    job = await store.create_job(spec(t("a"), t("b"), t("c", "a", "b"), t("d", "c"), t("e", "c")))
    a, b = await store.claim("w1", limit=2)
    await store.complete(a.task.id, a.token)
    assert await store.complete_many([(b.task.id, b.token, {})]) == []
    [c] = await store.claim("w1")
    for claim in await store.complete_and_claim(c.task.id, c.token, {}, "w1", limit=2):
        await store.complete(claim.task.id, claim.token)
    await run_to_end(store, job.id)
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def retries_then_for_good(s: Stores) -> None:
    """A retryable failure waits (retrying), becomes ready when due; the last attempt fails for good and
    fails what depends on it; a person retries it."""
    store = s.main
    job = await store.create_job(spec(t("r", max_attempts=2), t("after", "r")))
    first = (await store.claim("w1"))[0]
    assert await store.fail(first.task.id, first.token, "flaky") is S.RETRYING

    async def due() -> bool:
        return (await store.maintain()).retries_ready == 1

    await poll(due, "the retry is due")
    second = (await store.claim("w1"))[0]
    assert await store.fail(second.task.id, second.token, "broken") is S.FAILED
    assert (await store.get_job(job.id)).status is JobStatus.FAILED
    await store.resume_job(job.id, retry=["r"])
    assert await run_to_end(store, job.id) == ["r", "after"]


async def leases(s: Stores) -> None:
    """An expired lease is requeued; the second loss fails the task; a draining worker hands one back."""
    store = s.leases
    job = await store.create_job(spec(t("x"), t("after", "x"), t("h", priority="low")))
    for expected in ("requeued", "lost_failed"):
        [claim] = await store.claim("w1")
        assert claim.task.key == "x"

        async def expired(expected: str = expected) -> bool:
            return getattr(await store.maintain(), expected) == 1

        await poll(expired, f"the lease expires ({expected})")
    [handed] = await store.claim("w1")
    assert handed.task.key == "h"
    await store.hand_back(handed.task.id, handed.token)
    await store.resume_job(job.id, skip=["x"])
    assert sorted(await run_to_end(store, job.id)) == ["after", "h"]


async def critical_pause(s: Stores) -> None:
    """A critical task failing pauses its job; resumed once with a retry and once with a skip."""
    store = s.main
    for resume in ({"retry": ["critical"]}, {"skip": ["critical"]}):
        job = await store.create_job(
            spec(
                t("setup"),
                t("critical", "setup", criticality="critical"),
                t("after", "critical"),
                t("side", "setup", priority="low"),
                t("last", "after", "side"),
            )
        )
        await run_to_end(store, job.id, fail=frozenset({"critical"}), limit=1)
        assert (await store.get_job(job.id)).status is JobStatus.PAUSED
        await store.resume_job(job.id, **resume)
        await run_to_end(store, job.id)
        assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def pause_by_hand(s: Stores) -> None:
    """A paused job keeps its tasks' statuses: no task moves to paused."""
    store = s.main
    job = await store.create_job(spec(t("a"), t("b", "a")))
    [running] = await store.claim("w1")
    await store.pause_job(job.id, "lunch")
    await store.complete(running.task.id, running.token)
    assert await store.claim("w1") == []
    await store.resume_job(job.id)
    assert await run_to_end(store, job.id) == ["b"]


async def splits(s: Stores) -> None:
    """Split parents wait for their parts; a failed part fails the parent, and is retried or skipped;
    a failed dependency of a split task fails its parts, and its retry revives them."""
    store = s.main
    two = [Part(("x",), 1.0), Part(("y",), 1.0)]
    job = await store.create_job(spec(t("gate"), t("big", "gate"), t("after", "big")))
    await store.split_task(job.id, "big", two)  # blocked -> waiting
    assert await run_to_end(store, job.id) == ["gate", "big.1", "big.2", "after"]
    for resume in ({"retry": ["big.1"]}, {"skip": ["big.1"]}):
        job = await store.create_job(spec(t("big"), t("after", "big")))
        await store.split_task(job.id, "big", two)  # ready -> waiting
        await run_to_end(store, job.id, fail=frozenset({"big.1"}))
        assert (await store.get_task(job.id, "big")).status is S.FAILED
        await store.resume_job(job.id, **resume)
        await run_to_end(store, job.id)
        assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    job = await store.create_job(spec(t("gate"), t("big", "gate"), t("after", "big")))
    await store.split_task(job.id, "big", two)
    await run_to_end(store, job.id, fail=frozenset({"gate"}))
    await store.resume_job(job.id, retry=["gate"])
    assert await run_to_end(store, job.id) == ["gate", "big.1", "big.2", "after"]


async def expansions(s: Stores) -> None:
    """A running planner expanded into subtasks waits for them; a failed subtask fails it, and
    retrying the subtask revives it."""
    store = s.main
    for fail in (frozenset(), frozenset({"plan.p1"})):
        job = await store.create_job(spec(t("plan"), t("after", "plan")))
        [planner] = await store.claim("w1")
        planned = spec(t("p1"), t("p2", "p1")).tasks
        assert await store.expand_task(planner.task.id, planner.token, planned) == ["plan.p1", "plan.p2"]
        await run_to_end(store, job.id, fail=fail)
        if fail:
            assert (await store.get_task(job.id, "plan")).status is S.FAILED
            await store.resume_job(job.id, retry=list(fail))
            assert await run_to_end(store, job.id) == ["plan.p1", "plan.p2", "after"]
        assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


async def capacity(s: Stores) -> None:
    """Below the capacity floor ready tasks under 'normal' wait (paused), and return with a worker."""
    store = s.capacity
    job = await store.create_job(spec(t("low", criticality="low"), t("held", criticality="low"), t("normal")))
    assert (await store.maintain()).paused_for_capacity == 2
    await store.resume_job(job.id, skip=["held"])
    worker = WorkerInfo(
        id="w-cap", name="w", host="h", pid=1, version="0", capabilities=(), resources={}, concurrency=1
    )
    await store.register_worker(worker)
    assert (await store.maintain()).resumed_after_capacity == 1
    assert sorted(await run_to_end(store, job.id)) == ["low", "normal"]
    await store.deregister_worker(worker.id)


async def cancel(s: Stores) -> None:
    """Cancelling a job cancels its unfinished tasks whatever their status."""
    store = s.main
    job = await store.create_job(
        spec(
            t("run"),
            t("retry", max_attempts=3, backoff_base=1e6, backoff_cap=1e6),
            t("blocked", "run"),
            t("big"),
            t("low", criticality="low"),
            t("spare"),
        )
    )
    await store.split_task(job.id, "big", [Part(("x",), 1.0), Part(("y",), 1.0)])
    assert (await s.capacity.maintain()).paused_for_capacity == 1
    claims = {c.task.key: c for c in await store.claim("w1", limit=10)}
    assert sorted(claims) == ["big.1", "big.2", "retry", "run", "spare"]
    assert await store.fail(claims["retry"].task.id, claims["retry"].token, "later") is S.RETRYING
    await store.hand_back(claims["spare"].task.id, claims["spare"].token)
    assert await store.cancel_job(job.id) == 8


async def skips(s: Stores) -> None:
    """A person skips tasks of every status a skip may leave; the table refuses the others."""
    store = s.main
    job = await store.create_job(
        spec(
            t("f"),
            t("uf", "f"),
            t("r", max_attempts=3, backoff_base=1e6, backoff_cap=1e6),
            t("gate"),
            t("b", "gate"),
            t("ready"),
            t("low", criticality="low"),
            t("big"),
        )
    )
    await store.split_task(job.id, "big", [Part(("x",), 1.0)])
    assert (await s.capacity.maintain()).paused_for_capacity == 1
    claims = {c.task.key: c for c in await store.claim("w1", limit=10)}
    assert sorted(claims) == ["big.1", "f", "gate", "r", "ready"]
    await store.fail(claims["f"].task.id, claims["f"].token, "broken", retryable=False)
    await store.fail(claims["r"].task.id, claims["r"].token, "later")
    await store.hand_back(claims["ready"].task.id, claims["ready"].token)
    for key in ("gate", "big"):  # running, waiting
        with pytest.raises(InvalidTransition):
            await store.resume_job(job.id, skip=[key])
    for key in ("uf", "f", "r", "b", "ready", "low"):
        await store.resume_job(job.id, skip=[key])
    for key in ("gate", "big.1"):
        await store.complete(claims[key].task.id, claims[key].token)
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


SCENARIOS = [
    successes,
    retries_then_for_good,
    leases,
    critical_pause,
    pause_by_hand,
    splits,
    expansions,
    capacity,
    cancel,
    skips,
]


async def run_scenarios(store: Store, open_store: OpenStore) -> Recorder:
    recorder = Recorder(store)
    leases = await open_store(lease_ttl=0.1, max_lease_losses=2)
    capacity = await open_store(workers={"capacity_floor": 1, "degrade_below": "normal"})
    watched = Stores(*(cast(Store, Watched(s, recorder)) for s in (store, leases, capacity)))
    for scenario in SCENARIOS:
        recorder.scenario = scenario.__name__
        await scenario(watched)
    return recorder


def arrow(move: Move) -> str:
    return f"{move[0]} -> {move[1]}"


def listing(moves: list[Moved], wanted: set[Move]) -> str:
    return "\n".join(sorted({f"  {m}" for m in moves if (m.old, m.new) in wanted})) or "  (none)"


def test_the_lists_of_exceptions_are_consistent() -> None:
    assert set(DEFENSIVE) <= TABLE
    assert set(IN_TABLE_BUT_NEVER_MADE) <= TABLE
    assert not set(MADE_BUT_NOT_IN_TABLE) & TABLE
    assert not set(DEFENSIVE) & set(IN_TABLE_BUT_NEVER_MADE)


async def test_the_store_makes_every_move_of_the_table_and_no_other(
    store: Store, open_store: OpenStore
) -> None:
    moves = (await run_scenarios(store, open_store)).moves
    made = {(m.old, m.new) for m in moves}
    problems: list[str] = []
    outside, known = made - TABLE, set(MADE_BUT_NOT_IN_TABLE)
    if outside - known:
        problems.append("moves the table does not allow:\n" + listing(moves, outside - known))
    if known - outside:
        problems.append(f"MADE_BUT_NOT_IN_TABLE, no longer made: {sorted(map(arrow, known - outside))}")
    never, excused = TABLE - made, set(DEFENSIVE) | set(IN_TABLE_BUT_NEVER_MADE)
    if never - excused:
        problems.append(f"entries of the table no scenario made: {sorted(map(arrow, never - excused))}")
    if excused - never:
        problems.append("listed as never made, but made:\n" + listing(moves, excused - never))
    silent = sorted({f"  {m}" for m in moves if not m.evented})
    if silent:
        problems.append("moves without an event of their own:\n" + "\n".join(silent))
    assert not problems, "\n".join(problems)
