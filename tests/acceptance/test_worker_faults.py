"""Fault injection with real worker processes: kill -9, every worker gone, capacity drops, a database
that stops. Short, configurable intervals keep each scenario to seconds."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from helixcode.config import DatabaseSettings, Settings
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.store.store import Store
from helixcode.store.tables import results
from helixcode.store.tables import tasks as tasks_table
from tests.acceptance.conftest import Cli

pytestmark = pytest.mark.slow

LEASE_TTL = 2.0
FAST = {
    "HELIX_TASKS_LEASE_TTL": str(LEASE_TTL),
    "HELIX_TASKS_HEARTBEAT_INTERVAL": "0.3",
    "HELIX_TASKS_BACKOFF_BASE": "0.05",
    "HELIX_WORKERS_LOST_AFTER": "1.5",
    "HELIX_WORKERS_POLL_INTERVAL": "0.2",
}


@pytest.fixture
def fast_cli(cli: Cli) -> Cli:
    cli.env.update(FAST)
    return cli


@pytest.fixture
async def db(fast_cli: Cli) -> AsyncIterator[Store]:
    store = await Store.open(Settings(database=DatabaseSettings(url=fast_cli.env["HELIX_DATABASE_URL"])))
    try:
        yield store
    finally:
        await store.aclose()


def write_plan(tmp_path: Path, tasks: list[dict[str, Any]]) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({"name": "faults", "tasks": tasks}))
    return path


def start_worker(cli: Cli, *extra: str) -> subprocess.Popen[str]:
    return cli.popen("worker", "--exit-when-idle", "--concurrency", "2", *extra)


async def wait_for(check: Callable[[], Any], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {within}s waiting for {what}")


async def job_done(store: Store, job_id: str) -> bool:
    return (await store.get_job(job_id)).status.terminal


def stop_all(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def assert_each_succeeded_once(store: Store, job_id: str) -> None:
    job = await store.get_job(job_id)
    assert job.status is JobStatus.SUCCEEDED, job
    tasks = await store.list_tasks(job_id)
    assert {t.status for t in tasks} == {TaskStatus.SUCCEEDED}
    succeeded = Counter(
        e.task_key
        for e in await store.list_events(job_id, limit=100_000)
        if e.kind == "succeeded" and e.task_key
    )
    assert set(succeeded.values()) == {1}, [k for k, n in succeeded.items() if n != 1]
    assert len(succeeded) == len(tasks)
    async with store._read() as conn:
        per_task = (
            await conn.execute(
                sa.select(results.c.task_id, sa.func.count())
                .join(tasks_table, tasks_table.c.id == results.c.task_id)
                .where(results.c.outcome == "succeeded", tasks_table.c.job_id == job_id)
                .group_by(results.c.task_id)
            )
        ).all()
    assert len(per_task) == len(tasks)
    assert {n for _, n in per_task} == {1}


async def test_kill_9_mid_checkpoint_resumes_elsewhere_from_the_checkpoint(
    fast_cli: Cli, db: Store, tmp_path: Path
) -> None:
    """At several random points, kill -9 the worker running a checkpointing task: another worker takes
    it over within lease TTL + 1 s and starts from the latest checkpoint; nothing completes twice."""
    rng = random.Random(7)
    procs: list[subprocess.Popen[str]] = []
    jobs = []
    try:
        for round_, point in enumerate(rng.uniform(0.5, 1.6) for _ in range(3)):
            plan = write_plan(
                tmp_path,
                [
                    {
                        "id": f"s{round_}",
                        "type": "building",
                        "title": "S",
                        # Long enough to outlast the successor's start-up on a loaded host.
                        "run": {"builtin": "sleep", "seconds": 12},
                    }
                ],
            )
            job = fast_cli.json("submit", str(plan))
            jobs.append(job["id"])
            victim = start_worker(fast_cli, "--name", "victim")
            procs.append(victim)

            async def checkpointed(job_id: str = job["id"]) -> Any:
                events = await db.list_events(job_id)
                return any(e.kind == "checkpoint" for e in events)

            await wait_for(checkpointed, 20, "the victim to checkpoint")
            # The successor stands by before the kill (so what is timed is the takeover, not its
            # start-up); it does not exit when idle, and is stopped once its round is over.
            successor = fast_cli.popen("worker", "--concurrency", "2", "--name", f"successor{round_}")
            procs.append(successor)

            async def standing_by(name: str = f"successor{round_}") -> bool:
                return any(w.name == name for w in await db.list_workers(include_stopped=False))

            await wait_for(standing_by, 60, "the successor to start")
            await asyncio.sleep(point)
            victim.kill()
            killed_at = time.time()
            victim.wait()

            async def reclaimed(job_id: str = job["id"], after: float = killed_at) -> Any:
                events = await db.list_events(job_id)
                return [e for e in events if e.kind == "claimed" and e.created_at > after]

            claims = await wait_for(reclaimed, LEASE_TTL + 10, "the task to be reclaimed")
            assert claims[0].created_at - killed_at <= LEASE_TTL + 1.0
            await wait_for(lambda job_id=job["id"]: job_done(db, job_id), 20, "the job to finish")
            task = (await db.list_tasks(job["id"]))[0]
            output = await _success_output(db, task.id)
            assert output["resumed_from"] > 0, output
            assert task.lease_losses == 1
            successor.terminate()  # not to take the next round's task before its victim does
            successor.wait(30)
    finally:
        stop_all(procs)
    for job_id in jobs:
        await assert_each_succeeded_once(db, job_id)


async def _finished(store: Store, job_id: str, key: str) -> bool:
    return (await store.get_task(job_id, key)).status is TaskStatus.SUCCEEDED


async def _success_output(store: Store, task_id: int) -> dict[str, Any]:
    async with store._read() as conn:
        row = (
            await conn.execute(
                sa.select(results.c.output).where(
                    results.c.task_id == task_id, results.c.outcome == "succeeded"
                )
            )
        ).one()
    return dict(row[0])


async def test_a_300_task_graph_survives_a_worker_killed_twice(
    fast_cli: Cli, db: Store, tmp_path: Path
) -> None:
    """Two workers plus a third on demand; one is killed with -9 twice; every task succeeds exactly once
    and `helix workers` shows the dead worker as lost."""
    rng = random.Random(300)
    tasks = []
    for i in range(300):
        deps = sorted({f"t{rng.randrange(i)}" for _ in range(rng.randint(0, 2))}) if i > 10 else []
        run = {"builtin": "sleep", "seconds": 0.3} if i % 10 == 0 else {"builtin": "noop"}
        tasks.append(
            {
                "id": f"t{i}",
                "type": "building",
                "title": f"T{i}",
                "depends_on": deps,
                "priority": rng.choice(["low", "normal", "high"]),
                "run": run,
            }
        )
    job = fast_cli.json("submit", str(write_plan(tmp_path, tasks)))
    steady = start_worker(fast_cli, "--name", "steady")
    victim = start_worker(fast_cli, "--name", "victim")
    procs = [steady, victim]
    try:
        for round_ in range(2):

            async def progressed(threshold: int = 60 * (round_ + 1)) -> bool:
                summary = await db.job_summary(job["id"])
                return summary.counts.get(TaskStatus.SUCCEEDED, 0) >= threshold

            await wait_for(progressed, 60, "progress")
            victim.kill()
            victim.wait()
            victim = start_worker(fast_cli, "--name", "victim")
            procs.append(victim)
        await wait_for(lambda: job_done(db, job["id"]), 120, "the job to finish")
    finally:
        stop_all(procs)
    await assert_each_succeeded_once(db, job["id"])
    listed = fast_cli.json("workers", "--all")
    lost = [w for w in listed if w["name"] == "victim" and w["status"] == "lost"]
    assert len(lost) >= 1, listed
    assert any(w["name"] == "steady" and w["status"] == "stopped" for w in listed), listed


async def test_every_worker_killed_then_new_ones_continue(fast_cli: Cli, db: Store, tmp_path: Path) -> None:
    tasks = [
        {"id": f"t{i}", "type": "building", "title": f"T{i}", "run": {"builtin": "sleep", "seconds": 0.4}}
        for i in range(12)
    ]
    job = fast_cli.json("submit", str(write_plan(tmp_path, tasks)))
    first = [start_worker(fast_cli) for _ in range(2)]

    async def some_done() -> bool:
        return (await db.job_summary(job["id"])).counts.get(TaskStatus.SUCCEEDED, 0) >= 2

    try:
        await wait_for(some_done, 30, "first tasks")
        for proc in first:
            proc.kill()
            proc.wait()
        second = [start_worker(fast_cli) for _ in range(2)]
        await wait_for(lambda: job_done(db, job["id"]), 60, "the job to finish")
    finally:
        stop_all(first + locals().get("second", []))
    await assert_each_succeeded_once(db, job["id"])


async def test_capacity_below_the_floor_pauses_low_criticality_until_a_worker_returns(
    fast_cli: Cli, db: Store, tmp_path: Path
) -> None:
    fast_cli.env.update({"HELIX_WORKERS_CAPACITY_FLOOR": "4", "HELIX_WORKERS_DEGRADE_BELOW": "high"})
    tasks = [
        {
            "id": "vital",
            "type": "building",
            "title": "V",
            "criticality": "critical",
            "run": {"builtin": "sleep", "seconds": 0.2},
        },
        *[
            {
                "id": f"low{i}",
                "type": "building",
                "title": f"L{i}",
                "criticality": "low",
                "run": {"builtin": "noop"},
            }
            for i in range(4)
        ],
    ]
    job = fast_cli.json("submit", str(write_plan(tmp_path, tasks)))
    lone = fast_cli.popen("worker", "--concurrency", "2", "--name", "lone")  # 2 slots < floor of 4
    procs = [lone]
    try:

        async def low_paused() -> bool:
            found = await db.list_tasks(job["id"])
            by_key = {t.key: t.status for t in found}
            return by_key["vital"] is TaskStatus.SUCCEEDED and all(
                by_key[f"low{i}"] is TaskStatus.PAUSED for i in range(4)
            )

        await wait_for(low_paused, 30, "low-criticality tasks to pause while the critical one runs")
        procs.append(fast_cli.popen("worker", "--concurrency", "2", "--name", "helper"))  # back to 4 slots
        await wait_for(lambda: job_done(db, job["id"]), 30, "the low tasks to resume and finish")
    finally:
        stop_all(procs)
    await assert_each_succeeded_once(db, job["id"])
    kinds = [(e.kind, e.details.get("reason")) for e in await db.list_events(job["id"])]
    assert ("paused", "capacity below the floor") in kinds
    assert ("ready", "capacity restored") in kinds


@pytest.mark.postgres
@pytest.mark.disruptive
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # it stops the PostgreSQL server
async def test_postgres_stopped_and_restarted_mid_run_loses_nothing(
    fast_cli: Cli, db: Store, tmp_path: Path, postgres_control: Callable[[str], None]
) -> None:
    tasks = [
        {"id": f"t{i}", "type": "building", "title": f"T{i}", "run": {"builtin": "sleep", "seconds": 0.3}}
        for i in range(30)
    ]
    job = fast_cli.json("submit", str(write_plan(tmp_path, tasks)))
    procs = [start_worker(fast_cli) for _ in range(2)]
    try:

        async def some_done() -> bool:
            return (await db.job_summary(job["id"])).counts.get(TaskStatus.SUCCEEDED, 0) >= 5

        await wait_for(some_done, 30, "first tasks")
        postgres_control("stop")
        await asyncio.sleep(1.0)
        postgres_control("start")
        await wait_for(lambda: _reachable(db), 30, "PostgreSQL to come back")
        await wait_for(lambda: job_done(db, job["id"]), 90, "the job to finish")
    finally:
        stop_all(procs)
    await assert_each_succeeded_once(db, job["id"])


async def _reachable(store: Store) -> bool:
    try:
        await store.now()
        return True
    except Exception:
        return False
