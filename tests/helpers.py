"""What many test files need, in one place (not copied from file to file).

Plans of ``noop`` tasks, read-outs of a job's state, and a runner that drives the store the way a
worker does::

    job = await store.create_job(spec(t("a"), t("b", "a", priority="high")))
    assert await statuses(store, job.id) == {"a": S.READY, "b": S.BLOCKED}
    assert await run_to_end(store, job.id) == ["a", "b"]

Fixtures live in the ``conftest.py`` of the folder that uses them; this module holds plain functions
and constants.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa

from helixcode.domain.enums import TaskStatus
from helixcode.domain.models import Claim, Event
from helixcode.domain.plan import JobSpec, parse_plan
from helixcode.store.retention import DAY
from helixcode.store.store import Store
from helixcode.store.tables import events, jobs, results, tasks

#: The ``open_store`` fixture (``tests/integration/conftest.py``): another Store on the test's database,
#: with settings overridden: ``await open_store(lease_ttl=0.1, workers={"capacity_floor": 1})``.
OpenStore = Callable[..., Awaitable[Store]]

__all__ = [
    "EVENT_STATUS",
    "NOT_TRANSITIONS",
    "OpenStore",
    "age",
    "claim_one",
    "event_kinds",
    "free_port",
    "result_rows",
    "run_to_end",
    "spec",
    "status_told",
    "statuses",
    "t",
]


S = TaskStatus

#: The status a task event's kind moves its task to.
EVENT_STATUS: dict[str, TaskStatus] = {
    "ready": S.READY,
    "blocked": S.BLOCKED,
    "claimed": S.RUNNING,
    "requeued": S.READY,
    "retried": S.RETRYING,
    "succeeded": S.SUCCEEDED,
    "failed": S.FAILED,
    "upstream_failed": S.UPSTREAM_FAILED,
    "cancelled": S.CANCELLED,
    "skipped": S.SKIPPED,
    "split": S.WAITING,
    "expanded": S.WAITING,
    "waiting": S.WAITING,
    "paused": S.PAUSED,
}
#: Task events that move no status.
NOT_TRANSITIONS = frozenset({"progress", "checkpoint", "landing_refused"})


def status_told(e: Event) -> TaskStatus | None:
    """The status a task event says its task moved to (``KeyError`` for a kind not known here), or
    None: an event that moves nothing, or a person's retry, where the ``ready`` that follows (or the
    task's row: it writes no ``blocked``) says where the task went."""
    if e.kind in NOT_TRANSITIONS or (e.kind == "retried" and e.details.get("by") == "request"):
        return None
    return EVENT_STATUS[e.kind]


def spec(*task_list: dict[str, Any], name: str = "test") -> JobSpec:
    """A job of ``building`` tasks titled by their ids, running ``noop`` unless a dict sets ``run``;
    each dict overrides the defaults."""
    return parse_plan(
        {
            "name": name,
            "tasks": [
                {"type": "building", "title": t["id"], "run": {"builtin": "noop"}, **t} for t in task_list
            ],
        }
    )


def t(key: str, *deps: str, **fields: Any) -> dict[str, Any]:
    """One task of a ``spec``: its id, what it depends on, and any other field of a plan's task."""
    return {"id": key, "depends_on": list(deps), **fields}


async def statuses(store: Store, job_id: str) -> dict[str, TaskStatus]:
    """Each task's status, by key."""
    return {task.key: task.status for task in await store.list_tasks(job_id)}


async def claim_one(store: Store, worker: str = "w1", caps: tuple[str, ...] = ()) -> Claim:
    claims = await store.claim(worker, caps)
    assert len(claims) == 1, f"expected one claim, got {claims}"
    return claims[0]


async def run_to_end(
    store: Store, job_id: str, fail: frozenset[str] = frozenset(), *, limit: int = 4
) -> list[str]:
    """Claim (``limit`` at a time) and complete until nothing is claimable, failing for good the keys
    in ``fail``; returns the keys in claim order."""
    order: list[str] = []
    while claims := await store.claim("runner", limit=limit):
        for c in claims:
            assert c.task.job_id == job_id
            order.append(c.task.key)
            if c.task.key in fail:
                await store.fail(c.task.id, c.token, f"{c.task.key} broke", retryable=False)
            else:
                await store.complete(c.task.id, c.token)
    return order


async def age(store: Store, job_id: str, days: float) -> None:
    """Move a job's clock back: its times and its events' times, ``days`` earlier (for retention)."""
    shift = days * DAY
    async with store._write() as conn:
        await conn.execute(
            jobs.update()
            .where(jobs.c.id == job_id)
            .values(created_at=jobs.c.created_at - shift, finished_at=jobs.c.finished_at - shift)
        )
        await conn.execute(
            events.update().where(events.c.job_id == job_id).values(created_at=events.c.created_at - shift)
        )


async def event_kinds(store: Store, job_id: str, key: str) -> list[str]:
    """The kinds of one task's events, oldest first."""
    return [e.kind for e in await store.list_events(job_id) if e.task_key == key]


async def result_rows(store: Store, job_id: str) -> list[dict[str, Any]]:
    """The job's ``results`` rows (one per finished attempt) with their task's key, in attempt order."""
    stmt = (
        sa.select(results, tasks.c.key)
        .join(tasks, tasks.c.id == results.c.task_id)
        .where(tasks.c.job_id == job_id)
        .order_by(results.c.task_id, results.c.attempt)
    )
    async with store._read() as conn:
        return [dict(r) for r in (await conn.execute(stmt)).mappings()]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (at the time of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], seconds: float = 10.0, step: float = 0.02
) -> None:
    """Poll ``check`` (sync or async) until it holds; fail after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        met = check()
        if not isinstance(met, bool):
            met = await met
        if met:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {seconds:g}s")
        await asyncio.sleep(step)
