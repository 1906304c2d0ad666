"""What an idle worker costs PostgreSQL: with LISTEN connected, a few round trips a minute, not several
a second (a fleet of a thousand idle workers must not keep the database busy); and a task submitted
meanwhile is still picked up at once, woken by NOTIFY rather than found by polling."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa

from helixcode.config import Settings, TasksSettings, WorkersSettings
from helixcode.domain.enums import TaskStatus
from helixcode.store.store import Store
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.helpers import spec, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("db_url", ["postgres"], indirect=True)]

IDLE_SECONDS = 16.0


class Counter:
    """Statements sent on a store's connections (LISTEN's own connection is outside the pool and
    sends only its one LISTEN): those through SQLAlchemy, seen by its event, and the hot-path ones
    the store runs on the driver directly (``StoreBase._fetch``), seen by wrapping that."""

    def __init__(self, store: Store) -> None:
        self.statements = 0
        self.checkouts = 0
        self.seen: list[str] = []
        sa.event.listen(store.engine.sync_engine, "before_cursor_execute", self._statement)
        sa.event.listen(store.engine.sync_engine.pool, "checkout", self._checkout)
        fetch = store._fetch

        async def counted(conn: Any, key: Any, *args: Any) -> Any:
            self._record(f"[driver] {key}")
            return await fetch(conn, key, *args)

        store._fetch = counted  # type: ignore[method-assign]

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self._record(statement)

    def _record(self, statement: str) -> None:
        self.statements += 1
        self.seen.append(f"{time.monotonic():.1f} {' '.join(statement.split())[:70]}")

    def _checkout(self, *args: Any) -> None:
        self.checkouts += 1


@pytest.fixture
async def open_stores(settings: Settings) -> AsyncIterator[list[Store]]:
    """Two stores on the test's database, as two worker processes would have."""
    s = settings.model_copy(  # the defaults, not the test suite's fast leases
        update={
            # A long safety-net cap, so that a pickup within seconds can only be NOTIFY's doing.
            "workers": WorkersSettings(poll_interval=1.0, lost_after=30.0, listen_poll_interval=30.0),
            "tasks": TasksSettings(),
        }
    )
    stores = [await Store.open(s) for _ in range(2)]
    yield stores
    for store in stores:
        await store.aclose()


async def test_an_idle_worker_costs_a_few_round_trips_a_minute_and_still_wakes_at_once(
    open_stores: list[Store], store: Store
) -> None:
    """Measured on a worker that does not lead: the reaper's leader (one per fleet, whatever its size)
    runs maintenance every second; every other worker only beats, polls as a safety net and checks
    that a leader lives."""
    options = WorkerOptions(concurrency=4, detect=False, sample_gpu=False)
    leader, idle = (Worker(s, s.settings, options) for s in open_stores)
    running = [asyncio.create_task(leader.run())]
    try:
        await wait_until(lambda: bool(leader.reaper and leader.reaper.leading))
        running.append(asyncio.create_task(idle.run()))
        # started, listening, first claims made
        await wait_until(lambda: bool(idle._hub and idle._hub.connected.is_set()))
        await asyncio.sleep(2.0)  # past its first claims and its first look at the leader
        counter = Counter(idle.store)
        await asyncio.sleep(IDLE_SECONDS)
        print(f"idle worker: {counter.statements} statements in {IDLE_SECONDS:g}s")  # for the record (-s)
        assert idle.reaper is not None
        assert not idle.reaper.leading
        assert counter.statements <= IDLE_SECONDS / 2, (
            f"an idle worker sent {counter.statements} statements in {IDLE_SECONDS:g}s "
            f"({counter.checkouts} checkouts): " + "\n".join(counter.seen)
        )
        leader.stop()  # the idle one must now do the work, woken by NOTIFY
        await running[0]
        job = await store.create_job(spec({"id": "now", "run": {"builtin": "noop"}}))
        started = time.monotonic()

        async def done() -> bool:
            return (await store.get_task(job.id, "now")).status is TaskStatus.SUCCEEDED

        await wait_until(done, 5)
        # Its safety-net poll was then about 10 s away (waits of 1, 2, 4, 8, 16 s): this was NOTIFY.
        assert time.monotonic() - started < 5.0, "woken by NOTIFY, not by the safety-net poll"
    finally:
        leader.stop()
        idle.stop()
        await asyncio.wait_for(asyncio.gather(*running), 30)
