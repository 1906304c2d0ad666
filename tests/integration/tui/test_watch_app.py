"""`helix watch`'s Textual app, headless (``App.run_test``), against a real database: directly and
through a real `helix serve` (the ``control`` fixture), on SQLite and PostgreSQL.

The app lists the job, shows its tasks with their statuses, follows a task that succeeds meanwhile
(completed through the store while the app runs), pauses, resumes and cancels the job (cancel only
once confirmed), retries and skips a failed task (skip once confirmed), draws the workers' sparklines
from their stored heartbeats, and quits on ``q``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from textual.widgets import DataTable, RichLog

from helixcode.cli.tui.app import ConfirmScreen, WatchApp
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.models import Beat
from helixcode.domain.records import WorkerInfo
from helixcode.engine.manager import TaskManager
from helixcode.store.store import Store
from tests.helpers import claim_one, spec, statuses, t, wait_until
from tests.integration.tui.conftest import Control

S = TaskStatus
SIZE = (160, 48)


def cell(app: WatchApp, table: str, row: str, column: str) -> str | None:
    """A cell's text, or None while the row is not shown."""
    shown: DataTable[object] = app.query_one(f"#{table}", DataTable)
    if row not in {k.value for k in shown.rows}:
        return None
    return str(shown.get_cell(row, column))


def task_status(app: WatchApp, key: str) -> Callable[[], str | None]:
    return lambda: cell(app, "tasks", key, "status")


async def shows(check: Callable[[], object], expected: object) -> None:
    """Wait until ``check()`` returns ``expected`` (the app looks every 0.1 s in these tests)."""
    await wait_until(lambda: check() == expected, seconds=15)


def events_text(app: WatchApp) -> str:
    return "\n".join(strip.text for strip in app.query_one("#events", RichLog).lines)


async def test_the_job_its_tasks_and_a_success_while_watching(control: Control, store: Store) -> None:
    older = await store.create_job(spec(t("x"), name="older"))
    job = await store.create_job(spec(t("a"), t("b", "a"), name="watched"))
    await store.register_worker(WorkerInfo("w-1", "builder", "host", 1, "test", (), {}, 2))
    await store.heartbeat([Beat("w-1")], resources={"cpu_percent": 20.0, "memory_percent": 30.0})
    async with control() as c:
        app = WatchApp(c, interval=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await shows(lambda: cell(app, "jobs", job.id, "name"), "watched")
            # The workers, with their stored heartbeats: next to the database and through the API's
            # history route alike.
            await shows(lambda: cell(app, "workers", "w-1", "cpu"), "20%")
            assert app.feed.stored_history is True
            assert "history since this watch began" not in str(app.query_one("#workers").border_title)
            assert cell(app, "jobs", older.id, "name") == "older"
            await shows(task_status(app, "a"), "ready")  # the latest job is shown first
            assert cell(app, "tasks", "b", "status") == "blocked"
            assert cell(app, "tasks", "a", "tries") == "0/3"

            claim = await claim_one(store)
            await shows(task_status(app, "a"), "running")
            await store.complete(claim.task.id, claim.token)
            await shows(task_status(app, "a"), "succeeded")
            await shows(task_status(app, "b"), "ready")
            assert cell(app, "tasks", "a", "progress") == "████████ 100%"
            await wait_until(lambda: "succeeded" in events_text(app))
            assert "claimed" in events_text(app)

            # Selecting the other job (the jobs list, one row down) shows its tasks instead.
            app.query_one("#jobs", DataTable).focus()
            await pilot.press("down")
            await shows(task_status(app, "x"), "ready")
            assert cell(app, "tasks", "a", "status") is None
            assert app.job_id == older.id


async def test_pause_resume_and_cancel_only_once_confirmed(control: Control, store: Store) -> None:
    job = await store.create_job(spec(t("a"), t("b", "a")))
    async with control() as c:
        app = WatchApp(c, job.id[:6], interval=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await shows(task_status(app, "a"), "ready")

            await pilot.press("p")
            assert (await store.get_job(job.id)).status is JobStatus.PAUSED
            await shows(lambda: cell(app, "jobs", job.id, "status"), "paused")
            await pilot.press("r")
            assert (await store.get_job(job.id)).status is JobStatus.RUNNING
            await shows(lambda: cell(app, "jobs", job.id, "status"), "running")
            await pilot.press("r")  # running already: said, nothing written
            assert [e.kind for e in await store.list_events(job.id)].count("resumed") == 1

            await pilot.press("c")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmScreen)
            assert (await store.get_job(job.id)).status is JobStatus.RUNNING

            await pilot.press("c")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await wait_until(lambda: _status(store, job.id, JobStatus.CANCELLED))
            await shows(task_status(app, "b"), "cancelled")


async def _status(store: Store, job_id: str, wanted: JobStatus) -> bool:
    return (await store.get_job(job_id)).status is wanted


def select(app: WatchApp, key: str) -> None:
    table: DataTable[object] = app.query_one("#tasks", DataTable)
    table.move_cursor(row=table.get_row_index(key))


async def test_retry_and_skip_a_failed_task(control: Control, store: Store) -> None:
    job = await store.create_job(spec(t("a", max_attempts=1), t("b", "a")))
    claim = await claim_one(store)
    await store.fail(claim.task.id, claim.token, "broke", retryable=False)
    assert await statuses(store, job.id) == {"a": S.FAILED, "b": S.UPSTREAM_FAILED}
    async with control() as c:
        app = WatchApp(c, job.id, interval=0.1)
        async with app.run_test(size=SIZE) as pilot:
            await shows(task_status(app, "a"), "failed")
            assert "broke" in (cell(app, "tasks", "a", "now") or "")

            select(app, "a")
            await pilot.press("t")
            assert (await statuses(store, job.id))["a"] is S.READY
            await shows(task_status(app, "b"), "blocked")

            claim = await claim_one(store)
            await store.fail(claim.task.id, claim.token, "broke again", retryable=False)
            await shows(task_status(app, "a"), "failed")
            select(app, "a")
            await pilot.press("s")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("escape")  # declined: nothing changes
            await pilot.pause()
            assert (await statuses(store, job.id))["a"] is S.FAILED
            await pilot.press("s")
            await pilot.press("y")
            await wait_until(lambda: _skipped(store, job.id))
            await shows(task_status(app, "a"), "skipped")
            await shows(task_status(app, "b"), "ready")

            select(app, "b")
            await pilot.press("t")  # b is ready: refused, said, nothing changes
            await pilot.pause()
            assert (await statuses(store, job.id))["b"] is S.READY
            assert app.is_running


async def _skipped(store: Store, job_id: str) -> bool:
    return (await statuses(store, job_id)) == {"a": S.SKIPPED, "b": S.READY}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_workers_with_sparklines_from_their_stored_heartbeats_and_q_quits(store: Store) -> None:
    info = WorkerInfo("w-1", "builder", "host", 1, "test", (), {"cpu_count": 2}, 2)
    await store.register_worker(info)
    for cpu in (10.0, 50.0, 90.0):
        await store.heartbeat([Beat("w-1")], resources={"cpu_percent": cpu, "memory_percent": 40.0})
    app = WatchApp(TaskManager(store), interval=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await shows(lambda: cell(app, "workers", "w-1", "cpu"), "90%")
        assert cell(app, "workers", "w-1", "worker") == "builder"
        assert cell(app, "workers", "w-1", "cpu over time") == "▂▅▇"
        assert cell(app, "workers", "w-1", "mem") == "40%"
        assert app.feed.stored_history is True
        await store.heartbeat([Beat("w-1")], resources={"cpu_percent": 0.0, "memory_percent": 40.0})
        await shows(lambda: cell(app, "workers", "w-1", "cpu over time"), "▂▅▇▁")  # one cell a sample
        assert "no job yet" in str(app.query_one("#job-head").render())
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0
