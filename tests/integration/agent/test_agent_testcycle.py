"""`helix test`'s cycle on the real engine: test runs, debugging tasks and re-tests are tasks in the
database, run by a real worker on a real git repository, on SQLite and PostgreSQL.

The embedded SmolLM2 model cannot fix code, so its debugging tasks get one tool round (which the loop
spends on ``finish``: a real model call that changes no file). What these tests prove is the cycle:
the tasks it adds, the round limit, the failure message, and that each re-test runs on the debugging
task's branch. The way to a pass is honest: a test that fails on its first run only (it leaves a
marker file outside the repository), so the re-test after the debugging task passes.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from helixcode.agent.services import AgentServices, close_services, install
from helixcode.agent.workspace import Workspace, branch_name, job_branch
from helixcode.config import Settings
from helixcode.domain.enums import JobStatus, TaskStatus
from helixcode.domain.models import Task
from helixcode.domain.plan import JobSpec, parse_plan
from helixcode.llm.registry import build_manager
from helixcode.store.store import Store
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.integration.agent.conftest import git, model_missing
from tests.run_counter import RunCounter

S = TaskStatus
COMMAND = f"{sys.executable} -m pytest -q -p no:cacheprovider"
BUGGY = "def add(a, b):\n    return a - b\n"
TESTS = (
    "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n\n\n"
    "def test_zero():\n    assert add(0, 0) == 0\n"
)
FLAKY = (  # the tests run in the sandbox, which sees no host file: they count their runs over the network
    "{counter}\n\ndef test_fails_on_the_first_run_only():\n    assert n > 1, 'the first run fails'\n"
)


def sample_repo(root: Path, calc: str, **tests: str) -> Path:
    repo = root / "sample"
    (repo / "tests").mkdir(parents=True)
    (repo / "calc.py").write_text(calc)
    for name, text in tests.items():
        (repo / "tests" / f"{name}.py").write_text(text)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "init")
    return repo


def cycle_plan(rounds: int, command: str | None = COMMAND, *, network: bool | None = None) -> JobSpec:
    tests: dict[str, Any] = {"rounds": rounds, "agent": {"max_rounds": 1, "max_tokens": 48, "temperature": 0}}
    if network is not None:
        tests["network"] = network
    if command:
        tests["command"] = command
    return parse_plan(
        {"name": "tests", "tasks": [{"id": "test", "type": "testing", "title": "t", "run": {"tests": tests}}]}
    )


@pytest.fixture
async def services(settings: Settings, store: Store) -> AsyncIterator[AgentServices]:
    """What the worker's agent tasks share: this test's store and the embedded model (loaded lazily,
    so tests that never debug never load it)."""
    shared = AgentServices(settings, store, build_manager(settings), owned=False)
    install(settings.database.url, shared)
    yield shared
    await close_services()
    await shared.llm.aclose()


async def run_cycle(store: Store, settings: Settings, spec: JobSpec, repo: Path) -> dict[str, Task]:
    job = await store.create_job(spec, workdir=str(repo))
    await Workspace(repo, job.id).ensure_base()
    options = WorkerOptions(
        concurrency=1, capabilities=["git", "llm"], exit_when_idle=True, detect=False, sample_gpu=False
    )
    async with asyncio.timeout(200):
        await Worker(store, settings, options).run()
    return {t.key: t for t in await store.list_tasks(job.id)}


@pytest.mark.slow
async def test_agent_testcycle_passing_tests_end_the_job_at_once(
    store: Store, settings: Settings, services: AgentServices, tmp_path: Path
) -> None:
    repo = sample_repo(tmp_path, BUGGY.replace("a - b", "a + b"), test_calc=TESTS)
    tasks = await run_cycle(store, settings, cycle_plan(rounds=2, command=None), repo)
    assert list(tasks) == ["test"]
    assert tasks["test"].status is S.SUCCEEDED
    job_id = tasks["test"].job_id
    assert (await store.get_job(job_id)).status is JobStatus.SUCCEEDED
    output = (await store.task_outputs(job_id))["test"]
    assert output["tests"]["passed"] == 2
    assert output["tests"]["command"].endswith("-m pytest -q")  # detected in the worktree
    assert output["summary"].startswith("tests pass in round 1 (2 passed)")
    assert output["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert not (repo / ".pytest_cache").exists()  # the tests ran in a worktree, not the checkout


@pytest.mark.slow
async def test_agent_testcycle_without_rounds_fails_with_the_command_and_counts(
    store: Store, settings: Settings, services: AgentServices, tmp_path: Path
) -> None:
    repo = sample_repo(tmp_path, BUGGY, test_calc=TESTS)
    tasks = await run_cycle(store, settings, cycle_plan(rounds=0), repo)
    assert list(tasks) == ["test"]  # no debugging task when no round is allowed
    assert tasks["test"].status is S.FAILED
    assert tasks["test"].last_error == f"tests still failing (1 failed, 1 passed): {COMMAND}"
    assert tasks["test"].attempts == 1  # a test failure is an outcome, not something to retry
    assert (await store.get_job(tasks["test"].job_id)).status is JobStatus.FAILED


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_agent_testcycle_debugs_and_retests_until_the_round_limit(
    store: Store, settings: Settings, services: AgentServices, tmp_path: Path
) -> None:
    if reason := model_missing():
        pytest.skip(reason)
    repo = sample_repo(tmp_path, BUGGY, test_calc=TESTS)
    tasks = await run_cycle(store, settings, cycle_plan(rounds=2), repo)
    assert {k: t.status for k, t in tasks.items()} == {
        "test": S.FAILED,
        "test.fix1": S.SUCCEEDED,
        "test.test2": S.FAILED,
        "test.test2.fix2": S.SUCCEEDED,
        "test.test2.test3": S.FAILED,
    }  # and no fix3: two rounds were allowed
    last = tasks["test.test2.test3"]
    assert last.last_error == f"tests still failing after 2 debugging rounds (1 failed, 1 passed): {COMMAND}"
    assert [tasks[k].run["tests"]["round"] for k in ("test", "test.test2", "test.test2.test3")] == [1, 2, 3]
    fix = tasks["test.fix1"]
    assert fix.parent_key == "test"
    assert tasks["test.test2"].depends_on == ("test.fix1",)
    assert "assert -1 == 5" in fix.description  # the failure output, for the model to read
    assert fix.run["agent"]["test_command"] == COMMAND
    job_id = fix.job_id
    assert (await store.get_job(job_id)).status is JobStatus.FAILED
    events = await store.list_events(job_id)
    expanded = [e for e in events if e.kind == "expanded"]
    assert [e.details["children"] for e in expanded] == [
        ["test.fix1", "test.test2"],
        ["test.test2.fix2", "test.test2.test3"],
    ]
    outputs = await store.task_outputs(job_id)
    assert outputs["test"]["summary"] == (
        f"tests fail in round 1 (1 failed, 1 passed): {COMMAND}; debugging in test.fix1, then test.test2"
    )
    assert outputs["test.fix1"]["tokens"] > 0  # the model really ran
    # Each re-test ran on what its debugging task left: the debugging task's final commit.
    assert outputs["test.test2"]["commit"] == outputs["test.fix1"]["commit"]
    assert outputs["test.test2"]["tests"]["failed"] == 1


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_agent_testcycle_passes_after_a_debugging_round(
    store: Store, settings: Settings, services: AgentServices, tmp_path: Path, run_counter: RunCounter
) -> None:
    if reason := model_missing():
        pytest.skip(reason)
    flaky = FLAKY.format(counter=run_counter.snippet())
    repo = sample_repo(tmp_path, BUGGY.replace("a - b", "a + b"), test_flaky=flaky)
    tasks = await run_cycle(store, settings, cycle_plan(rounds=3, network=True), repo)
    assert {k: t.status for k, t in tasks.items()} == {
        "test": S.SUCCEEDED,
        "test.fix1": S.SUCCEEDED,
        "test.test2": S.SUCCEEDED,
    }
    job_id = tasks["test"].job_id
    assert (await store.get_job(job_id)).status is JobStatus.SUCCEEDED
    outputs = await store.task_outputs(job_id)
    assert outputs["test"]["tests"]["failed"] == 1  # the first run's outcome stays on record
    assert outputs["test.test2"]["summary"].startswith("tests pass in round 2 (1 passed)")
    fix_commit = outputs["test.fix1"]["commit"]
    assert outputs["test.test2"]["commit"] == fix_commit
    assert git(repo, "rev-parse", branch_name(job_id, "test.fix1")).strip() == fix_commit
    # The debugging task's work is on the job's branch, where `helix test` tells the user to look.
    git(repo, "merge-base", "--is-ancestor", fix_commit, job_branch(job_id))
