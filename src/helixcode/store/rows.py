"""Rows to domain records; the one place that knows how columns map to fields."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from helixcode.config import TasksSettings
from helixcode.domain.enums import Criticality, JobStatus, Priority, TaskStatus, TaskType
from helixcode.domain.models import Checkpoint, Event, Job, Task
from helixcode.domain.ordering import claim_rank
from helixcode.store.tables import jobs, tasks

if TYPE_CHECKING:  # only annotations: the plan models (pydantic, YAML) load only where a plan is read
    from helixcode.domain.plan import TaskSpec

__all__ = [
    "JOB_COLUMNS",
    "checkpoint_from_row",
    "event_from_row",
    "job_from_row",
    "task_from_row",
    "task_values",
    "with_doubles",
]

#: ``tasks`` columns stored as DOUBLE.
_DOUBLE_TASK_COLUMNS = tuple(c.name for c in tasks.c if isinstance(c.type, sa.Double))


def with_doubles(row: dict[str, Any]) -> dict[str, Any]:
    """A ``tasks`` row whose DOUBLE columns hold floats, as a SELECT gives them. Claims need this: on
    PostgreSQL the claimed row comes as JSON (``row_to_json``), which writes 1.0 as 1, and SQLite's
    RETURNING gives a whole REAL as an integer."""
    for name in _DOUBLE_TASK_COLUMNS:
        if (value := row[name]) is not None:
            row[name] = float(value)
    return row


#: The ``jobs`` columns a ``Job`` is made from: not ``spec``, the plan as submitted, which for a large
#: graph is megabytes of JSON to decode (1.2 s for 100,000 tasks) on every lookup.
JOB_COLUMNS = tuple(c for c in jobs.c if c.key != "spec")


# Enum ``.value`` is a descriptor call; a 100,000-task submission reads it half a million times.
_VALUES: dict[TaskType, str] = {t: t.value for t in TaskType}
_BLOCKED, _READY = TaskStatus.BLOCKED.value, TaskStatus.READY.value


def task_values(
    spec: TaskSpec,
    *,
    job_id: str,
    key: str,
    run: Mapping[str, Any],
    now: float,
    defaults: TasksSettings,
    chain: int = 1,
    parent_id: int | None = None,
) -> dict[str, Any]:
    """The ``tasks`` row for a task spec, whether it comes from a plan file or from the planner.
    ``chain``: the length of the longest chain of tasks waiting on it, itself included."""
    priority, criticality = spec.priority.rank, spec.criticality.rank
    return {
        "job_id": job_id,
        "key": key,
        "parent_id": parent_id,
        "type": _VALUES[spec.type],
        "title": spec.title,
        "description": spec.description,
        "priority": priority,
        "claim_rank": claim_rank(priority, criticality),
        "chain_rank": -chain,
        "criticality": criticality,
        "requires": list(spec.requires),
        "run": dict(run),
        "status": _BLOCKED if spec.depends_on else _READY,
        "pending_deps": len(spec.depends_on),
        "max_attempts": spec.max_attempts or defaults.max_attempts,
        "timeout": spec.timeout if spec.timeout is not None else defaults.timeout,
        "backoff_base": spec.backoff_base,
        "backoff_cap": spec.backoff_cap,
        "created_at": now,
        "ready_at": None if spec.depends_on else now,
    }


def job_from_row(row: Mapping[Any, Any]) -> Job:
    return Job(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        status=JobStatus(row["status"]),
        workdir=row["workdir"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        pause_reason=row["pause_reason"],
        max_cost=row.get("max_cost"),
        max_tokens=row.get("max_tokens"),
    )


def task_from_row(
    row: Mapping[Any, Any],
    depends_on: tuple[str, ...] = (),
    parent_key: str | None = None,
    result: dict[str, Any] | None = None,
) -> Task:
    return Task(
        id=row["id"],
        job_id=row["job_id"],
        key=row["key"],
        type=TaskType(row["type"]),
        title=row["title"],
        description=row["description"],
        priority=Priority.from_rank(row["priority"]),  # type: ignore[arg-type]
        criticality=Criticality.from_rank(row["criticality"]),  # type: ignore[arg-type]
        status=TaskStatus(row["status"]),
        requires=tuple(row["requires"]),
        depends_on=depends_on,
        run=dict(row["run"]),
        max_attempts=row["max_attempts"],
        attempts=row["attempts"],
        failures=row["failures"],
        lease_losses=row["lease_losses"],
        timeout=row["timeout"],
        progress=row["progress"],
        progress_message=row["progress_message"],
        parent_key=parent_key,
        weight=row["weight"],
        created_at=row["created_at"],
        ready_at=row["ready_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        next_attempt_at=row["next_attempt_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        last_error=row["last_error"],
        result=result,
    )


def event_from_row(row: Mapping[Any, Any], task_key: str | None) -> Event:
    return Event(
        id=row["id"],
        job_id=row["job_id"],
        task_key=task_key,
        kind=row["kind"],
        created_at=row["created_at"],
        attempt=row["attempt"],
        worker_id=row["worker_id"],
        details=dict(row["details"] or {}),
    )


def checkpoint_from_row(row: Mapping[Any, Any]) -> Checkpoint:
    return Checkpoint(
        task_id=row["task_id"],
        attempt=row["attempt"],
        name=row["name"],
        data=row["data"],
        created_at=row["created_at"],
        worker_id=row["worker_id"],
    )
