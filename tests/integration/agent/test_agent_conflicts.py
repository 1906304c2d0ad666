"""Merge conflicts through the engine: two tasks edit the same line of ``app.py`` in a real repository.

``on_conflict: fail`` (the default) fails the task naming the file; ``on_conflict: debug`` turns it into
a ``debugging`` task whose worktree holds the committed conflict markers. The embedded model cannot
resolve a conflict, so the test plays that agent's hands through the workspace API (on the branch the
engine gave the task); claiming, executing, completing and integrating go through the real worker path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from helixcode.agent.executors.agent import AgentExecutor
from helixcode.agent.services import AgentServices, close_services, install, services_for
from helixcode.agent.workspace import Workspace, branch_name, job_branch
from helixcode.config import Settings
from helixcode.domain.enums import JobStatus, TaskStatus, TaskType
from helixcode.domain.plan import JobSpec, parse_plan
from helixcode.llm.local import LocalProvider
from helixcode.llm.manager import LLMManager, ProviderEntry
from helixcode.llm.registry import build_manager
from helixcode.store.store import Store
from helixcode.worker.runtime import Worker, WorkerOptions
from tests.integration.agent.conftest import git

S = TaskStatus
CAPS = ["git", "llm", "sandbox"]
RESOLVED = "def hello():\n    return 'bonjour, hallo'\n"


def plan(on_conflict: str | None, *extra: dict[str, Any]) -> JobSpec:
    agent = {"max_rounds": 1, "max_tokens": 48, "temperature": 0}
    if on_conflict:
        agent["on_conflict"] = on_conflict
    run = {"agent": agent}
    tasks = [
        {"id": "a", "type": "building", "title": "greet in French", "run": run},
        {"id": "b", "type": "building", "title": "greet in German", "run": run},
        {"id": "c", "type": "building", "title": "add a farewell", "depends_on": ["a", "b"], "run": run},
    ]
    return parse_plan({"name": "conflict", "tasks": tasks + list(extra)})


Install = Callable[[LLMManager | None], None]


@pytest.fixture
async def use_services(settings: Settings, store: Store) -> AsyncIterator[Install]:
    """Agent services of this "worker process": the test's store, and a given LLM manager."""
    managers: list[LLMManager] = []

    def use(llm: LLMManager | None = None) -> None:
        manager = llm or build_manager(settings)  # lazy: the model loads only if a task calls it
        managers.append(manager)
        install(settings.database.url, AgentServices(settings, store, manager, owned=False))

    yield use
    await close_services()  # forgets them (they are not owned: the fixtures close their parts)
    for manager in managers:
        await manager.aclose()


def worker(store: Store, settings: Settings) -> Worker:
    return Worker(store, settings, WorkerOptions(detect=False, reaper=False, sample_gpu=False))


async def run_next(w: Worker, key: str) -> None:
    """Claim the next task as this worker and run it through the worker's own execution path."""
    [claim] = await w.store.claim(w.id, CAPS, 1)
    assert claim.task.key == key
    await w._execute(claim)  # executor, then complete / fail / already reported, as in the claim loop


async def hands_edit(store: Store, repo: Path, job_id: str, edits: dict[str, str]) -> None:
    """Play the agent of finished tasks: each edits app.py's one line on its branch, then completes."""
    claims = await store.claim("test-hands", CAPS, len(edits))
    assert sorted(c.task.key for c in claims) == sorted(edits)
    ws = Workspace(repo, job_id)
    for claim in claims:
        t = ws.prepare_sync(claim.task.key, [])
        (t.path / "app.py").write_text(f"def hello():\n    return {edits[claim.task.key]!r}\n")
        commit = ws.commit_sync(t, f"{claim.task.key}: {claim.task.title}")
        ws.release_sync(t)
        await store.complete(claim.task.id, claim.token, {"summary": "done", "commit": commit})


async def hands_resolve(store: Store, repo: Path, job_id: str, key: str, *, complete: bool) -> str:
    """Resolve a debugging task's conflict on the branch the engine prepares for it; returns the commit."""
    services = await services_for(store.settings.database.url)
    task = await store.get_task(job_id, key)
    sources, _ = await AgentExecutor._inputs(services, task)  # the engine's choice of starting point
    ws = Workspace(repo, job_id)
    t = ws.prepare_sync(key, sources)
    text = (t.path / "app.py").read_text()
    for marker in ("<<<<<<< ", "\n=======\n", ">>>>>>> "):  # committed conflict markers
        assert marker in text
    for side in ("'bonjour'", "'hallo'"):  # both sides are there to choose from
        assert side in text
    (t.path / "app.py").write_text(RESOLVED)
    commit = ws.commit_sync(t, f"{key}: keep both greetings")
    assert commit is not None
    ws.release_sync(t)
    if complete:
        [claim] = await store.claim("test-hands", CAPS, 1)
        assert claim.task.key == key
        ws.integrate_sync(key)
        await store.complete(claim.task.id, claim.token, {"summary": "resolved", "commit": commit})
    return commit


async def test_conflict_fails_naming_the_file_by_default(
    store: Store, settings: Settings, repo: Path, use_services: Install
) -> None:
    use_services(None)
    job = await store.create_job(plan(None), workdir=str(repo))
    await hands_edit(store, repo, job.id, {"a": "bonjour", "b": "hallo"})
    await run_next(worker(store, settings), "c")
    c = await store.get_task(job.id, "c")
    assert c.status is S.FAILED
    assert c.last_error is not None
    assert "merge conflict" in c.last_error
    assert "app.py" in c.last_error
    assert (await store.get_job(job.id)).status is JobStatus.FAILED
    assert len(await store.list_tasks(job.id)) == 3  # no debugging task without on_conflict: debug


async def test_conflict_becomes_a_debugging_task(
    store: Store, settings: Settings, repo: Path, use_services: Install
) -> None:
    use_services(None)
    job = await store.create_job(plan("debug"), workdir=str(repo))
    await hands_edit(store, repo, job.id, {"a": "bonjour", "b": "hallo"})
    await run_next(worker(store, settings), "c")

    tasks = {t.key: t for t in await store.list_tasks(job.id)}
    assert tasks["c"].status is S.WAITING
    fix = tasks["c.resolve"]
    assert fix.type is TaskType.DEBUGGING
    assert fix.status is S.READY
    assert fix.parent_key == "c"
    assert "app.py" in fix.title
    assert "app.py" in fix.description
    for side in ("a", "b"):
        assert branch_name(job.id, side) in fix.description  # both sides named
    assert fix.run["agent"]["resolves"] == ["app.py"]
    assert fix.run["agent"]["max_rounds"] == 1  # the task's own options are inherited
    again = tasks["c.work"]
    assert (again.type, again.title, again.status) == (TaskType.BUILDING, "add a farewell", S.BLOCKED)
    assert again.depends_on == ("c.resolve",)

    [expanded] = [e for e in await store.list_events(job.id) if e.kind == "expanded"]
    assert expanded.task_key == "c"
    assert expanded.details["reason"] == "merge conflict"
    assert expanded.details["stage"] == "prepare"
    assert expanded.details["conflicts"] == ["app.py"]
    outputs = await store.task_outputs(job.id)
    assert outputs["c"]["conflicts"] == ["app.py"]
    conflicted = outputs["c"]["conflict_commit"]
    for side in ("a", "b"):  # nothing lost: both sides are ancestors of the recorded merge
        tip = git(repo, "rev-parse", branch_name(job.id, side)).strip()
        assert git(repo, "merge-base", "--is-ancestor", tip, conflicted) == ""
    assert "<<<<<<< " in git(repo, "show", f"{branch_name(job.id, 'c')}:app.py")

    resolution = await hands_resolve(store, repo, job.id, "c.resolve", complete=True)
    assert git(repo, "show", f"{job_branch(job.id)}:app.py") == RESOLVED  # integrated
    assert (await store.get_task(job.id, "c.work")).status is S.READY
    # The task carries on from the resolution: its worktree starts from the resolved merge.
    services = await services_for(settings.database.url)
    sources, _ = await AgentExecutor._inputs(services, await store.get_task(job.id, "c.work"))
    started = Workspace(repo, job.id).prepare_sync("c.work", sources)
    assert started.base == resolution
    assert (started.path / "app.py").read_text() == RESOLVED


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_conflict_resolution_then_the_task_runs_to_the_end(
    store: Store, settings: Settings, repo: Path, use_services: Install, embedded: LocalProvider
) -> None:
    use_services(LLMManager({"embedded": ProviderEntry(embedded, priority=1)}))
    job = await store.create_job(plan("debug"), workdir=str(repo))
    await hands_edit(store, repo, job.id, {"a": "bonjour", "b": "hallo"})
    w = worker(store, settings)
    await run_next(w, "c")
    resolution = await hands_resolve(store, repo, job.id, "c.resolve", complete=False)
    await run_next(w, "c.resolve")  # the real executor: resumes the branch, checks no marker remains
    await run_next(w, "c.work")  # the real executor with the embedded model, from the resolution
    tasks = {t.key: t for t in await store.list_tasks(job.id)}
    assert {k: t.status for k, t in tasks.items()} == dict.fromkeys(tasks, S.SUCCEEDED)
    assert (await store.get_job(job.id)).status is JobStatus.SUCCEEDED
    tip = git(repo, "rev-parse", job_branch(job.id)).strip()
    for key in ("a", "b", "c.resolve", "c.work"):
        ref = git(repo, "rev-parse", branch_name(job.id, key)).strip()
        assert git(repo, "merge-base", "--is-ancestor", ref, tip) == ""
    assert git(repo, "merge-base", "--is-ancestor", resolution, tip) == ""
    assert "<<<<<<<" not in git(repo, "show", f"{tip}:app.py")


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_conflict_at_integration_is_resolved_onto_the_job_branch(
    store: Store, settings: Settings, repo: Path, use_services: Install, embedded: LocalProvider
) -> None:
    use_services(LLMManager({"embedded": ProviderEntry(embedded, priority=1)}))
    job = await store.create_job(plan("debug"), workdir=str(repo))
    ws = Workspace(repo, job.id)
    # b's earlier attempt already changed app.py on its branch (a resumed attempt keeps its branch).
    early = ws.prepare_sync("b", [])
    (early.path / "app.py").write_text("def hello():\n    return 'hallo'\n")
    ws.commit_sync(early, "wip(b): round 1")
    ws.release_sync(early)
    [claim] = await store.claim("test-hands", CAPS, 1)
    assert claim.task.key == "a"  # a lands first: the same line, another greeting
    t = ws.prepare_sync("a", [])
    (t.path / "app.py").write_text("def hello():\n    return 'bonjour'\n")
    ws.commit_sync(t, "a: greet in French")
    ws.integrate_sync("a")
    await store.complete(claim.task.id, claim.token, {"summary": "done"})

    w = worker(store, settings)
    await run_next(w, "b")  # the embedded model runs a round; integrating b then conflicts
    b = await store.get_task(job.id, "b")
    assert b.status is S.WAITING
    fix = await store.get_task(job.id, "b.resolve")
    assert fix.type is TaskType.DEBUGGING
    assert "app.py" in fix.description
    assert job_branch(job.id) in fix.description
    assert [t.key for t in await store.list_tasks(job.id) if t.parent_key == "b"] == ["b.resolve"]
    out = (await store.task_outputs(job.id))["b"]
    assert out["rounds"] == 1  # b's own work is kept as its result
    assert git(repo, "show", f"{job_branch(job.id)}:app.py") == "def hello():\n    return 'bonjour'\n"

    await hands_resolve(store, repo, job.id, "b.resolve", complete=False)
    await run_next(w, "b.resolve")
    fixed = await store.get_task(job.id, "b.resolve")
    assert fixed.status is S.SUCCEEDED, fixed.last_error
    tip = git(repo, "rev-parse", job_branch(job.id)).strip()
    ref = git(repo, "rev-parse", branch_name(job.id, "b")).strip()
    assert git(repo, "merge-base", "--is-ancestor", ref, tip) == ""  # b's work landed, resolved
    assert "<<<<<<<" not in git(repo, "show", f"{tip}:app.py")
