"""Merge conflicts: a visible failure (``on_conflict: fail``, the default) or a debugging task.

With ``on_conflict: debug`` (a run option, inherited by planned subtasks; ``helix run --on-conflict
debug``) a conflict does not fail the task. Instead, in one fenced transaction (``expand_task``), the
task becomes the waiting parent of the work that resolves it, like a planner of its subtasks:

- at **preparation** (its dependencies' branches conflict), its branch is set to their merge with the
  conflict markers committed, and it gets two children: ``<task>.resolve`` (a ``debugging`` task that
  starts from that branch and must remove every marker) and ``<task>.work`` (the task itself, run again
  from the resolution);
- at **integration** (its finished work conflicts with the job branch), its branch gets one more commit,
  the merge of the job branch into its work with the markers committed, and one child:
  ``<task>.resolve``, whose resolution lands on the job branch instead.

Nothing is lost: every side stays an ancestor of the recorded merge, the task's own output (summary,
commits) is kept as its result, and the ``expanded`` event names the files, the sides and the commit.
The parent succeeds when its children have, and only then are its dependents released. A resolution
task that itself conflicts fails instead, so conflicts never nest without bound.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from helixcode.agent.executors.base import AlreadyReported, TaskContext
from helixcode.agent.workspace import (
    ConflictRecord,
    MergeConflict,
    TaskWorkspace,
    Workspace,
    branch_name,
    job_branch,
)
from helixcode.domain.enums import TaskType
from helixcode.domain.models import Task
from helixcode.domain.plan import AgentRun, TaskSpec
from helixcode.domain.runs import RunModel
from helixcode.errors import PlanError, TaskFailed

if TYPE_CHECKING:
    from helixcode.store.store import Store

__all__ = ["markers_left", "on_conflict", "resolver_spec"]

RESOLVE = "resolve"
WORK = "work"
_MARKER = re.compile(r"^(<{7}|>{7})( |$)|^={7}$", re.M)


async def on_conflict(
    ctx: TaskContext,
    store: Store,
    workspace: Workspace,
    exc: MergeConflict,
    *,
    debug: bool,
    sources: Sequence[str] | None = None,
    tws: TaskWorkspace | None = None,
    output: Mapping[str, Any] | None = None,
) -> NoReturn:
    """Fail with the conflicting files named, or hand the conflict to a debugging task.

    ``sources`` (the dependency branches) means the conflict came from preparing the task; otherwise it
    came from integrating its finished work (``tws``, ``output``) into the job branch.
    """
    task = ctx.task
    facts = {"conflicts": exc.files, **(output or {})}
    if not debug:
        raise TaskFailed(str(exc), retryable=False, output=facts) from exc
    at_start = sources is not None
    own = branch_name(task.job_id, task.key)
    refs = list(sources or []) if at_start else [own, job_branch(task.job_id)]
    record = await workspace.record_conflict(task.key, refs)
    if tws is not None:
        await workspace.release(tws)
    if not record.files:  # the job branch moved on and now merges cleanly: integrate on the next try
        raise TaskFailed(f"{exc}; merges cleanly now, retrying", output=facts) from exc
    subtasks = [resolver_spec(task, record, "preparing" if at_start else "integrating")]
    if at_start:
        subtasks.append(continuation_spec(task, ctx.run))
    keys = [f"{task.key}.{s.id}" for s in subtasks]
    details = {
        "reason": "merge conflict",
        "stage": "prepare" if at_start else "integrate",
        "conflicts": record.files,
        "sides": [f"{ref} {commit[:10]}" for ref, commit, _ in record.sides],
        "commit": record.commit,
    }
    result = {
        **facts,
        "summary": f"merge conflict in {', '.join(record.files)}: resolving in {keys[0]}",
        "conflict_commit": record.commit,
        "branch": own,
        "resolver": keys[0],
    }
    try:
        await store.expand_task(task.id, ctx.token, subtasks, result, details=details)
    except PlanError as exc2:  # e.g. the keys grew too long: the conflict stays a failure
        raise TaskFailed(f"{exc} (no debugging task: {exc2})", retryable=False, output=facts) from exc2
    raise AlreadyReported(f"merge conflict handed to {keys[0]}")


def resolver_spec(task: Task, record: ConflictRecord, stage: str) -> TaskSpec:
    """The debugging task that resolves ``record``, starting from the task's branch (its parent's)."""
    files = record.files
    sides = "\n".join(f"- {ref} at {commit[:10]}: {subject}" for ref, commit, subject in record.sides)
    description = (
        f"Merging these branches while {stage} task '{task.key}' ({task.title}) conflicted:\n{sides}\n\n"
        f"Conflicting files: {', '.join(files)}.\n"
        "The merge is committed with git's conflict markers: each conflicting region reads "
        "'<<<<<<< one side', its lines, '=======', the other side's lines, '>>>>>>> other side'. "
        "Edit each conflicting file so that it keeps what both sides meant, remove every marker line, "
        "and finish. The task fails while any marker remains in these files."
    )
    return TaskSpec(
        id=RESOLVE,
        type=TaskType.DEBUGGING,
        title=f"Resolve the merge conflict in {', '.join(files)}"[:200],
        description=description,
        priority=task.priority,
        criticality=task.criticality,
        requires=list(task.requires),
        max_attempts=task.max_attempts,
        timeout=task.timeout,
        run=AgentRun(agent={"resolves": files}),
    )


def continuation_spec(task: Task, run: RunModel) -> TaskSpec:
    """The task again, from the resolved merge of its dependencies (same type, title and run)."""
    return TaskSpec(
        id=WORK,
        type=task.type,
        title=task.title,
        description=(
            f"{task.description}\n\n(Continues '{task.key}' once the conflict between its dependencies "
            f"is resolved in '{task.key}.{RESOLVE}'.)"
        ).strip(),
        priority=task.priority,
        criticality=task.criticality,
        requires=list(task.requires),
        depends_on=[RESOLVE],
        max_attempts=task.max_attempts,
        timeout=task.timeout,
        run=run,
    )


def markers_left(root: Path, files: Sequence[str]) -> list[str]:
    """The files among ``files`` that still hold a conflict marker line (a deleted file holds none)."""
    left = []
    for name in files:
        path = root / name
        if path.is_file() and _MARKER.search(path.read_text(encoding="utf-8", errors="replace")):
            left.append(name)
    return left
