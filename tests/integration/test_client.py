"""The public Python client, ``helixcode.AsyncClient`` and ``helixcode.Client``, on both databases and
through a real `helix serve` API on each: graphs built in code submitted, followed to their end while a
real worker runs them, waited on; jobs paused, resumed, cancelled, a failed task retried or skipped;
errors that name the fault. Everything a test needs is imported from ``helixcode`` itself.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from helixcode import (
    AsyncClient,
    BuiltinRun,
    Client,
    ConfigError,
    Criticality,
    CycleError,
    Event,
    HelixError,
    JobSpec,
    JobStatus,
    JobSummary,
    NotFound,
    PlanError,
    Priority,
    SchedulerError,
    TaskSpec,
    TaskStatus,
    TaskType,
)
from helixcode.config import Settings, WorkersSettings
from helixcode.store.store import Store
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.integration.api.conftest import start_api

S = TaskStatus
README = Path(__file__).resolve().parents[2] / "README.md"


@dataclass
class Backend:
    """Where a test's client points (``AsyncClient(**client)``), and the settings of the database
    behind it, for the workers."""

    name: str
    client: dict[str, Any]
    settings: Settings


@pytest.fixture(params=["local", "api"])
def backend(request: pytest.FixtureRequest, settings: Settings, tmp_path: Path) -> Iterator[Backend]:
    """The test's database directly, or a real API server on it (with an operator's token)."""
    if request.param == "local":
        yield Backend("local", {"settings": settings, "poll": 0.05}, settings)
        return
    for api in start_api(settings.database.url, tmp_path):
        client = {"server": api.base_url, "token": api.tokens["operator"], "poll": 0.05}
        yield Backend("api", client, api.settings)


async def run_worker(settings: Settings) -> None:
    """A worker on its own store (as another process would run it) until no work is left."""
    worker_settings = Settings(
        database=settings.database,
        tasks=settings.tasks,
        workers=WorkersSettings(poll_interval=0.1, drain_timeout=0.0),
    )
    options = WorkerOptions(concurrency=2, exit_when_idle=True, detect=False, sample_gpu=False)
    async with await Store.open(worker_settings) as store, asyncio.timeout(30):
        await Worker(store, worker_settings, options).run()


def release_plan(name: str = "release") -> JobSpec:
    """A graph built in code: build, then a short sleep, then ship (which waits on both)."""
    return JobSpec(
        name=name,
        tasks=[
            TaskSpec(id="build", type=TaskType.BUILDING, title="Build", run=BuiltinRun(builtin="noop")),
            TaskSpec(
                id="nap",
                type=TaskType.TESTING,
                title="Nap",
                depends_on=["build"],
                run=BuiltinRun(builtin="sleep", seconds=0.2),
            ),
            TaskSpec(
                id="ship",
                type=TaskType.DEPLOYMENT,
                title="Ship",
                depends_on=["build", "nap"],
                priority=Priority.HIGH,
                criticality=Criticality.HIGH,
                run=BuiltinRun(builtin="noop"),
            ),
        ],
    )


def idle_plan(seconds: float = 60) -> JobSpec:
    """Two tasks that nobody runs in these tests: a job that stays open until it is controlled."""
    nap = BuiltinRun(builtin="sleep", seconds=seconds)
    return JobSpec(
        name="idle",
        tasks=[
            TaskSpec(id="first", type=TaskType.BUILDING, title="First", run=nap),
            TaskSpec(id="second", type=TaskType.BUILDING, title="Second", depends_on=["first"], run=nap),
        ],
    )


def counts(summary: JobSummary) -> dict[TaskStatus, int]:
    return {status: n for status, n in summary.counts.items() if n}


def assert_followed_to_the_end(followed: list[Event], logged: list[Event], final: JobSummary) -> None:
    """``follow`` gave every event of the log once, in order, and stopped after the job's last."""
    assert [e.id for e in followed] == [e.id for e in logged]
    assert followed[0].kind == "created"
    assert (followed[-1].kind, followed[-1].task_key) == ("succeeded", None)
    done = [e.task_key for e in followed if e.kind == "succeeded" and e.task_key]
    assert done == ["build", "nap", "ship"]
    assert final.job.status is JobStatus.SUCCEEDED
    assert counts(final) == {S.SUCCEEDED: 3}
    assert final.progress == 1.0


# -- the async client ---------------------------------------------------------------------------


async def test_a_graph_built_in_code_is_submitted_followed_and_waited_on(
    backend: Backend, tmp_path: Path
) -> None:
    async with AsyncClient(**backend.client) as helix:
        submitted = await helix.submit(release_plan(), workdir=tmp_path)
        job = submitted.job.id
        assert submitted.job.status is JobStatus.RUNNING
        assert submitted.job.workdir == str(tmp_path)
        assert counts(submitted) == {S.READY: 1, S.BLOCKED: 2}

        worker = asyncio.create_task(run_worker(backend.settings))
        followed = [event async for event in helix.follow(job)]
        await worker
        final = await helix.wait(job[:6])  # any unique prefix names the job

        assert_followed_to_the_end(followed, await helix.events(job), final)
        assert [e.id for e in await helix.events(job, after=followed[-3].id)] == [e.id for e in followed[-2:]]
        assert [e.id async for e in helix.follow(job, after=followed[-2].id)] == [followed[-1].id]
        tasks = {t.key: t for t in await helix.tasks(job)}
        assert tasks["ship"].priority is Priority.HIGH
        assert tasks["ship"].criticality is Criticality.HIGH
        assert {t.status for t in tasks.values()} == {S.SUCCEEDED}
        assert [t.key for t in await helix.tasks(job, [S.FAILED, S.READY])] == []
        assert [s.job.id for s in await helix.jobs()] == [job]
        assert (await helix.status(job)).job.finished_at is not None
        [seen] = await helix.workers()
        assert seen.status == "stopped"
        assert [w.id for w in await helix.workers(include_stopped=False)] == []


async def test_jobs_are_paused_resumed_and_cancelled(backend: Backend) -> None:
    async with AsyncClient(**backend.client) as helix:
        job = (await helix.submit(idle_plan())).job.id

        paused = await helix.pause(job, "for a look")
        assert (paused.job.status, paused.job.pause_reason) == (JobStatus.PAUSED, "for a look")
        resumed = await helix.resume(job)
        assert (resumed.job.status, resumed.job.pause_reason) == (JobStatus.RUNNING, None)
        with pytest.raises(TimeoutError, match=f"job {job} still running after 0.2s"):
            await helix.wait(job, timeout=0.2)

        cancelled = await helix.cancel(job)
        assert cancelled.job.status is JobStatus.CANCELLED
        assert counts(cancelled) == {S.CANCELLED: 2}
        assert (await helix.wait(job, timeout=5)).job.status is JobStatus.CANCELLED
        assert [e.kind for e in await helix.events(job)][-1] == "cancelled"
        with pytest.raises(SchedulerError, match="cannot be resumed"):
            await helix.resume(job)


async def test_a_failed_critical_task_is_retried_or_skipped(backend: Backend) -> None:
    def plan(name: str, fail_attempts: int | None) -> JobSpec:
        failing = BuiltinRun(builtin="fail", fail_attempts=fail_attempts)
        return JobSpec(
            name=name,
            tasks=[
                TaskSpec(
                    id="risky",
                    type=TaskType.BUILDING,
                    title="Risky",
                    criticality=Criticality.CRITICAL,
                    max_attempts=1,
                    run=failing,
                ),
                TaskSpec(
                    id="end",
                    type=TaskType.TESTING,
                    title="End",
                    depends_on=["risky"],
                    run=BuiltinRun(builtin="noop"),
                ),
            ],
        )

    async with AsyncClient(**backend.client) as helix:
        flaky = (await helix.submit(plan("flaky", fail_attempts=1))).job.id
        doomed = (await helix.submit(plan("doomed", fail_attempts=None))).job.id
        await run_worker(backend.settings)
        for job in (flaky, doomed):
            summary = await helix.status(job)
            assert summary.job.status is JobStatus.PAUSED, "a critical task failed for good"
            assert counts(summary) == {S.FAILED: 1, S.UPSTREAM_FAILED: 1}

        assert (await helix.retry_task(flaky, "risky")).job.status is JobStatus.RUNNING
        skipped = await helix.skip_task(doomed, "risky")
        assert counts(skipped) == {S.SKIPPED: 1, S.READY: 1}
        await run_worker(backend.settings)

        retried = {t.key: t for t in await helix.tasks(flaky)}
        assert (retried["risky"].status, retried["risky"].attempts) == (S.SUCCEEDED, 2)
        assert (await helix.wait(flaky, timeout=5)).job.status is JobStatus.SUCCEEDED
        assert counts(await helix.wait(doomed, timeout=5)) == {S.SKIPPED: 1, S.SUCCEEDED: 1}


async def test_a_goal_becomes_a_critical_planning_task(backend: Backend, tmp_path: Path) -> None:
    async with AsyncClient(**backend.client) as helix:
        summary = await helix.submit_goal("Add a --version flag\nand test it", tmp_path, name="version")
        assert (summary.job.name, summary.job.workdir) == ("version", str(tmp_path))
        [task] = await helix.tasks(summary.job.id)
        assert (task.type, task.criticality, task.title) == (
            TaskType.PLANNING,
            Criticality.CRITICAL,
            "Add a --version flag",
        )
        with pytest.raises(PlanError, match="goal: the goal is empty"):
            await helix.submit_goal("   ", tmp_path)


async def test_an_unknown_job_is_not_found_and_a_faulty_plan_names_its_fault(
    backend: Backend, tmp_path: Path
) -> None:
    async with AsyncClient(**backend.client) as helix:
        for call in (
            lambda: helix.status("nope"),
            lambda: helix.tasks("nope"),
            lambda: helix.events("nope"),
            lambda: helix.wait("nope"),
            lambda: helix.pause("nope"),
            lambda: helix.resume("nope"),
            lambda: helix.cancel("nope"),
            lambda: helix.retry_task("nope", "a"),
        ):
            with pytest.raises(NotFound, match="no job 'nope'"):
                await call()
        with pytest.raises(NotFound, match="no job 'nope'"):
            async for _ in helix.follow("nope"):
                pass

        noop = {"builtin": "noop"}
        faulty: dict[str, Any] = {
            "tasks": [{"id": "a", "type": "building", "title": "A", "depends_on": ["ghost"], "run": noop}]
        }
        with pytest.raises(PlanError, match="task 'a': depends on unknown task 'ghost'"):
            await helix.submit(faulty)
        faulty["tasks"][0] = {"id": "a", "type": "building", "title": "A", "run": {**noop, "second": 1}}
        with pytest.raises(PlanError, match=r"task 'a' \(tasks\[0\]\): unknown field 'run.second'"):
            await helix.submit(faulty)
        loop = JobSpec(
            tasks=[
                TaskSpec(
                    id="a",
                    type=TaskType.BUILDING,
                    title="A",
                    depends_on=["b"],
                    run=BuiltinRun(builtin="noop"),
                ),
                TaskSpec(
                    id="b",
                    type=TaskType.BUILDING,
                    title="B",
                    depends_on=["a"],
                    run=BuiltinRun(builtin="noop"),
                ),
            ]
        )
        with pytest.raises(CycleError, match="dependency cycle: a -> b -> a"):
            await helix.submit(loop)
        broken = tmp_path / "broken.yaml"
        broken.write_text("tasks: [", encoding="utf-8")
        with pytest.raises(PlanError, match=r"broken\.yaml: not valid YAML"):
            await helix.submit(broken)
        assert await helix.jobs() == [], "a faulty plan writes nothing"


# -- the sync client ----------------------------------------------------------------------------


def test_the_sync_client_submits_follows_and_waits(backend: Backend, tmp_path: Path) -> None:
    with Client(**backend.client) as helix, ThreadPoolExecutor(1) as pool:
        job = helix.submit(release_plan(), workdir=tmp_path).job.id
        worker = pool.submit(asyncio.run, run_worker(backend.settings))
        followed = list(helix.follow(job))
        worker.result()
        final = helix.wait(job, timeout=10)
        assert_followed_to_the_end(followed, helix.events(job), final)

        other = helix.submit(idle_plan()).job.id
        assert helix.pause(other).job.status is JobStatus.PAUSED
        assert helix.resume(other).job.status is JobStatus.RUNNING
        with pytest.raises(TimeoutError):
            helix.wait(other, timeout=0.1)
        assert helix.cancel(other).job.status is JobStatus.CANCELLED

        first = next(iter(helix.follow(job)))  # leaving a follow early closes it (no warning)
        assert first.id == followed[0].id
        with pytest.raises(NotFound, match="no job 'nope'"):
            helix.status("nope")
        with pytest.raises(PlanError, match="unknown task 'ghost'"):
            helix.submit({"tasks": [{"id": "a", "type": "building", "title": "A", "depends_on": ["ghost"]}]})
        assert {s.job.id for s in helix.jobs()} == {job, other}


async def test_the_sync_client_works_where_a_loop_is_already_running(settings: Settings) -> None:
    """Its loop runs in its own thread, so it can be used where ``asyncio.run`` could not (Jupyter)."""
    asyncio.get_running_loop()
    with Client(settings=settings) as helix:
        job = helix.submit(idle_plan()).job.id
        assert helix.status(job).job.status is JobStatus.RUNNING
        assert [t.key for t in helix.tasks(job, [S.READY])] == ["first"]


# -- construction and lifetime ------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder to run in, with no configuration file or HELIX_* variable anywhere in sight."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for name in [n for n in os.environ if n.startswith("HELIX_")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "project"
    (folder / "sub").mkdir(parents=True)
    monkeypatch.chdir(folder)
    return folder


async def test_without_arguments_the_database_is_found_as_the_cli_finds_it(
    project: Path, tmp_path: Path
) -> None:
    plan = project / "plan.yaml"
    plan.write_text(
        "name: from-a-file\nworkdir: work\ntasks:\n"
        "  - {id: a, type: building, title: A, run: {builtin: noop}}\n",
        encoding="utf-8",
    )
    async with AsyncClient() as helix:
        submitted = await helix.submit(str(plan))
    assert (project / ".helix" / "helix.db").is_file()
    assert submitted.job.workdir == str(project / "work"), "a plan file's workdir is relative to it"

    os.chdir(project / "sub")
    async with AsyncClient() as helix:
        assert [s.job.id for s in await helix.jobs()] == [submitted.job.id]
        here = await helix.submit(plan, workdir="elsewhere")
        assert here.job.workdir == str(project / "sub" / "elsewhere"), "a given workdir is relative to here"
    async with AsyncClient(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}") as helix:
        assert await helix.jobs() == []


async def test_a_client_has_one_backend_and_is_not_used_once_closed(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="not both"):
        AsyncClient(settings=settings, server="http://127.0.0.1:9")
    helix = AsyncClient(settings=settings)
    assert await helix.jobs() == [], "the backend opens on first use"
    await helix.aclose()
    with pytest.raises(HelixError, match="closed"):
        await helix.jobs()

    blocking = Client(settings=settings)
    blocking.close()
    blocking.close()
    with pytest.raises(HelixError, match="closed"):
        blocking.jobs()


async def test_the_readme_example_runs(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's example, as written, with a worker on the database it finds."""
    section = README.read_text(encoding="utf-8").split("## Python client", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None
    url = f"sqlite+aiosqlite:///{project / '.helix' / 'helix.db'}"
    worker_settings = Settings.model_validate({"database": {"url": url}, "workers": {"poll_interval": 0.1}})
    options = WorkerOptions(concurrency=2, detect=False, sample_gpu=False, reaper=False)
    async with await Store.open(worker_settings) as store:
        worker = Worker(store, worker_settings, options)
        running = asyncio.create_task(worker.run())
        try:
            await asyncio.wait_for(asyncio.to_thread(exec, match.group(1), {}), 60)
        finally:
            worker.stop()
            await running
    lines = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
    assert lines[0] == "created"
    assert "succeeded build" in lines
    assert lines[-2:] == ["succeeded", "succeeded"], "the job's last event, then its final status"
