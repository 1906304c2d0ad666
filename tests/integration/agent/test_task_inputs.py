"""Where a worktree task starts: only tasks that work on a branch of their own are merged in. A shell,
built-in or Python task has none (it worked in the job's directory), so an agent task that depends on
one starts from the job's base instead of failing on ``no commit at helix/tasks/<job>/<key>``."""

from __future__ import annotations

from pathlib import Path

from helixcode.agent.task_inputs import task_inputs
from helixcode.agent.workspace import Workspace, branch_name
from helixcode.store.store import Store
from tests.helpers import spec


async def test_only_dependencies_that_work_on_a_branch_are_started_from(store: Store, repo: Path) -> None:
    job = await store.create_job(
        spec(
            {"id": "build", "run": {"shell": "make"}},
            {"id": "seed", "run": {"python": "json:dumps", "args": {"obj": 1}}},
            {"id": "write", "run": {"agent": {}}},
            {"id": "fix", "run": {"agent": {}}, "depends_on": ["build", "seed", "write"]},
            {"id": "after_shell", "run": {"agent": {}}, "depends_on": ["build"]},
        )
    )
    tasks = {t.key: t for t in await store.list_tasks(job.id)}
    sources, _summaries = await task_inputs(store, tasks["fix"])
    assert sources == [branch_name(job.id, "write")]
    sources, _summaries = await task_inputs(store, tasks["after_shell"])
    assert sources == []
    # And the worktree it then gets starts from the job's base: no branch is looked up for the shell task.
    workspace = Workspace(str(repo), job.id)
    tws = await workspace.prepare("after_shell", sources)
    assert (tws.path / "app.py").exists()
