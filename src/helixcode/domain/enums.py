"""The vocabulary of the task model.

Enums are strings on the wire and in files; priority and criticality also have a numeric ``rank``
(higher is more urgent) so that the store can order claims with a plain index.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Criticality", "JobStatus", "Priority", "TaskStatus", "TaskType"]


class TaskType(StrEnum):
    PLANNING = "planning"
    DESIGN = "design"
    BUILDING = "building"
    TESTING = "testing"
    REFACTORING = "refactoring"
    DEBUGGING = "debugging"
    DIAGRAM = "diagram"
    DEPLOYMENT = "deployment"
    PORTING = "porting"


class _Ranked(StrEnum):
    """Members are declared least urgent first; ``rank`` is the 1-based position."""

    @property
    def rank(self) -> int:
        return _RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> _Ranked:
        return _BY_RANK[cls][rank - 1]


class Priority(_Ranked):
    """Which ready task a worker takes first."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class Criticality(_Ranked):
    """How much a failure matters: a failed critical task pauses its job."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    CRITICAL = "critical"


_RANKS: dict[_Ranked, int] = {
    member: index + 1 for enum in (Priority, Criticality) for index, member in enumerate(enum)
}
#: Members in rank order, per enum (every claimed task is built from its ranks).
_BY_RANK: dict[type[_Ranked], tuple[_Ranked, ...]] = {enum: tuple(enum) for enum in (Priority, Criticality)}


class TaskStatus(StrEnum):
    BLOCKED = "blocked"  # waiting on dependencies
    READY = "ready"  # claimable
    RUNNING = "running"  # leased by a worker
    RETRYING = "retrying"  # failed with attempts left; ready again at next_attempt_at
    WAITING = "waiting"  # split parent: waiting on its children
    PAUSED = "paused"  # held by a person or by degraded capacity
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # a person chose to go on without it; counts as done for dependents

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def satisfies_dependents(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.SKIPPED)


TERMINAL_STATUSES = frozenset(
    {
        TaskStatus.SUCCEEDED,
        TaskStatus.FAILED,
        TaskStatus.UPSTREAM_FAILED,
        TaskStatus.CANCELLED,
        TaskStatus.SKIPPED,
    }
)


class JobStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
