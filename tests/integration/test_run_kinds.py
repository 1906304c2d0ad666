"""Run kinds through the real worker, on both databases: Python tasks (sync and async, checkpoints and a
resumed attempt, failures), and task rows stored before a run model changed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import sqlalchemy as sa

from helixcode.config import Settings, TasksSettings, WorkersSettings
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.store.store import Store
from helixcode.store.tables import tasks
from helixcode.worker.runtime import Worker, WorkerOptions, WorkerStats
from tests.helpers import spec

S = TaskStatus
MODULE = "tests.python_tasks"


def python(function: str, **args: Any) -> dict[str, Any]:
    return {"python": f"{MODULE}:{function}", "args": args}


@pytest.fixture
async def run_worker(settings: Settings) -> AsyncIterator[Callable[[], Awaitable[WorkerStats]]]:
    """Run a worker on its own store (as another process would) until no work is left."""
    stores: list[Store] = []

    async def run() -> WorkerStats:
        worker_settings = Settings(
            database=settings.database,
            tasks=TasksSettings(**settings.tasks.model_dump()),
            workers=WorkersSettings(poll_interval=0.1, drain_timeout=0.0),
        )
        store = await Store.open(worker_settings)
        stores.append(store)
        options = WorkerOptions(concurrency=2, exit_when_idle=True, detect=False, sample_gpu=False)
        async with asyncio.timeout(30):
            return await Worker(store, worker_settings, options).run()

    yield run
    for store in stores:
        await store.aclose()


async def test_python_tasks_return_json_results_and_resume_from_their_checkpoints(
    store: Store, run_worker: Callable[[], Awaitable[WorkerStats]]
) -> None:
    job = await store.create_job(
        spec(
            {"id": "add", "run": python("add", a=2, b=3)},
            {"id": "count", "run": python("count", n=5, crash_at=2), "max_attempts": 2},
            {"id": "count-sync", "run": python("count_sync", n=4, crash_at=3), "max_attempts": 2},
            {"id": "shout", "run": python("Tools.shout", word="hi"), "depends_on": ["add"]},
        )
    )
    assert {t.key: t.requires for t in await store.list_tasks(job.id)}["add"] == (), "nothing by default"
    await run_worker()
    found = {t.key: t for t in await store.list_tasks(job.id)}
    assert {k: t.status for k, t in found.items()} == dict.fromkeys(found, S.SUCCEEDED)
    outputs = await store.task_outputs(job.id)
    assert outputs["add"] == {"result": 5}
    assert outputs["shout"] == {"result": "HI"}
    # The first attempts crashed after saving checkpoints; the second ones started from them.
    assert outputs["count"] == {"result": {"counted": 5, "started_at": 2, "attempt": 2, "task": "count"}}
    assert outputs["count-sync"] == {"result": {"counted": 4, "started_at": 3, "attempt": 2, "items": None}}
    assert found["count"].attempts == found["count-sync"].attempts == 2
    for key, n in (("count", 5), ("count-sync", 4)):
        saved = await store.list_checkpoints(found[key].id)
        assert saved[-1].data == {"done": n}
        assert {c.attempt for c in saved} == {1, 2}
        assert found[key].progress == 1.0
    assert "crashed after 2" in (await store.list_attempts(found["count"].id))[0].error  # type: ignore[operator]
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED


@pytest.mark.parametrize(
    ("run", "attempts", "error"),
    [
        (python("broken", message="boom"), 2, f"{MODULE}:broken raised ValueError: boom"),
        (python("give_up"), 1, "no point in retrying"),
        (python("not_json"), 1, f"{MODULE}:not_json returned a set, which is not JSON-serialisable"),
        (python("misuses_sync"), 2, "the _sync methods are for plain functions"),
        (
            {"python": "tests.no_such_module:f"},
            1,
            "no module 'tests.no_such_module' on the worker's PYTHONPATH",
        ),
        (python("missing"), 1, f"module '{MODULE}' has no attribute 'missing'"),
        (python("Tools.missing"), 1, f"{MODULE}:Tools has no attribute 'missing'"),
        (python("NOT_CALLABLE"), 1, f"'{MODULE}:NOT_CALLABLE' is a int, not a function"),
        (python("add", a=1), 1, "missing a required argument: 'b'"),
    ],
)
async def test_a_python_task_that_fails_says_why(
    store: Store,
    run_worker: Callable[[], Awaitable[WorkerStats]],
    run: dict[str, Any],
    attempts: int,
    error: str,
) -> None:
    job = await store.create_job(spec({"id": "p", "run": run, "max_attempts": 2}))
    await run_worker()
    task = await store.get_task(job.id, "p")
    assert task.status is S.FAILED
    assert error in (task.last_error or ""), task.last_error
    assert task.attempts == attempts, "missing code and bad results fail at once; exceptions are retried"


async def test_a_raising_function_leaves_its_traceback_in_the_attempt(
    store: Store, run_worker: Callable[[], Awaitable[WorkerStats]]
) -> None:
    job = await store.create_job(
        spec({"id": "p", "run": python("broken", message="boom"), "max_attempts": 1})
    )
    await run_worker()
    [attempt] = await store.list_attempts((await store.get_task(job.id, "p")).id)
    assert attempt.output["error"] == "ValueError"
    assert "raise ValueError(message)" in attempt.output["traceback"]


async def test_rows_stored_with_keys_a_model_no_longer_accepts_still_run(
    store: Store, run_worker: Callable[[], Awaitable[WorkerStats]], caplog: pytest.LogCaptureFixture
) -> None:
    job = await store.create_job(
        spec(
            {"id": "old-shell", "run": {"shell": 'test "$HELIX_ITEMS" = a'}},
            {"id": "old-python", "run": python("add", a=1, b=2)},
        )
    )
    stale = {
        "old-shell": {"shell": 'test "$HELIX_ITEMS" = a', "env": {}, "items": ["a"], "colour": "red"},
        "old-python": {"python": f"{MODULE}:add", "args": {"a": 1, "b": 2}, "retries": 3},
    }
    async with store._write() as conn:
        for key, run in stale.items():
            await conn.execute(
                sa.update(tasks).where(tasks.c.job_id == job.id, tasks.c.key == key).values(run=run)
            )
    with caplog.at_level(logging.WARNING, logger="helixcode.domain.kinds"):
        await run_worker()
    found = {t.key: t.status for t in await store.list_tasks(job.id)}
    assert found == dict.fromkeys(stale, S.SUCCEEDED)
    assert (await store.task_outputs(job.id))["old-python"] == {"result": 3}
    dropped = sorted(r.getMessage() for r in caplog.records if getattr(r, "action", "") == "run.lenient")
    assert dropped == [
        "stored python run: ignored retries (no longer accepted)",
        "stored shell run: ignored colour (no longer accepted)",
    ]


@pytest.mark.parametrize(
    ("stored", "error"),
    [
        ({"shell": 42}, "stored shell run: shell: Input should be a valid string"),
        ({"colour": "red"}, "unknown run"),
    ],
)
async def test_a_stored_run_that_cannot_be_read_fails_its_task_at_once(
    store: Store, run_worker: Callable[[], Awaitable[WorkerStats]], stored: dict[str, Any], error: str
) -> None:
    job = await store.create_job(spec({"id": "odd", "run": {"builtin": "noop"}, "max_attempts": 3}))
    async with store._write() as conn:
        await conn.execute(sa.update(tasks).where(tasks.c.job_id == job.id).values(run=stored))
    await run_worker()
    task = await store.get_task(job.id, "odd")
    assert (task.status, task.attempts) == (S.FAILED, 1)
    assert error in (task.last_error or ""), task.last_error
