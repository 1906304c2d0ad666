"""Where a task's work starts: the branches it builds on and what its dependencies reported.

Shared by the executors that work in a git worktree (the agent, the test runs of a test cycle).
"""

from __future__ import annotations

from helixcode.agent.workspace import branch_name
from helixcode.domain.kinds import kind_of
from helixcode.domain.models import Task
from helixcode.store.store import Store

__all__ = ["task_inputs"]


async def task_inputs(store: Store, task: Task) -> tuple[list[str], dict[str, str]]:
    """Branches to start from (dependencies, a finished parent standing for all its descendants; with
    none, the parent's branch) and the dependencies' summaries. Only tasks of a kind that works on a
    branch (``RunKind.branch``: the agent, test runs) have one: a shell, built-in or Python task
    before this one worked in the job's directory and adds nothing to start from."""
    all_tasks = {t.key: t for t in await store.list_tasks(task.job_id)}
    children: dict[str, list[str]] = {}
    for t in all_tasks.values():
        if t.parent_key:
            children.setdefault(t.parent_key, []).append(t.key)

    def family(key: str) -> list[str]:
        return [key] + [d for c in children.get(key, []) for d in family(c)]

    def branched(key: str) -> bool:
        kind = kind_of(all_tasks[key].run) if key in all_tasks else None
        return kind is not None and kind.branch

    task = all_tasks.get(task.key, task)  # a claim's task does not carry its dependencies' keys
    keys = [k for dep in task.depends_on for k in family(dep) if branched(k)]
    if not keys and task.parent_key and branched(task.parent_key):
        keys = [task.parent_key]
    outputs = await store.task_outputs(task.job_id)
    summaries = {k: str(outputs.get(k, {}).get("summary", "")) for k in task.depends_on}
    return [branch_name(task.job_id, k) for k in dict.fromkeys(keys)], summaries
