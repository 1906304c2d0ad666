"""The records the engine hands around: plain, immutable, no I/O.

The store turns rows into these; the edges render them. Times are seconds since the epoch (floats) as
measured by the database clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from helixcode.domain.enums import Criticality, JobStatus, Priority, TaskStatus, TaskType

__all__ = ["Beat", "Checkpoint", "Claim", "Event", "Job", "JobSummary", "LeaseState", "Maintenance", "Task"]


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    name: str
    description: str
    status: JobStatus
    workdir: str | None
    created_at: float
    updated_at: float
    finished_at: float | None = None
    pause_reason: str | None = None
    max_cost: float | None = None
    max_tokens: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Task:
    id: int
    job_id: str
    key: str
    type: TaskType
    title: str
    description: str
    priority: Priority
    criticality: Criticality
    status: TaskStatus
    requires: tuple[str, ...]
    depends_on: tuple[str, ...]
    run: dict[str, Any]
    max_attempts: int
    attempts: int
    failures: int
    lease_losses: int
    timeout: float | None
    progress: float
    progress_message: str | None
    parent_key: str | None
    weight: float
    created_at: float
    ready_at: float | None
    started_at: float | None
    finished_at: float | None
    next_attempt_at: float | None
    lease_owner: str | None
    lease_expires_at: float | None
    last_error: str | None
    result: dict[str, Any] | None = None
    #: Model calls of all its attempts (filled by the engine's task listing; 0 / None elsewhere).
    tokens: int = 0
    cost_usd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Event:
    id: int
    job_id: str
    task_key: str | None
    kind: str
    created_at: float
    attempt: int | None = None
    worker_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    task_id: int
    attempt: int
    name: str
    data: Any
    created_at: float
    worker_id: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """A task handed to a worker: the lease token it must show on every write, and where to resume."""

    task: Task
    token: str
    attempt: int
    workdir: str | None
    checkpoint: Checkpoint | None
    #: The W3C ``traceparent`` of the span that submitted the task's job, if it was traced.
    trace_context: str | None = None


class LeaseState(StrEnum):
    HELD = "held"
    LOST = "lost"  # someone else holds it now, or it expired and was requeued
    CANCELLED = "cancelled"  # the task or its job was cancelled: stop working on it


@dataclass(frozen=True, slots=True)
class Beat:
    """One worker's heartbeat: that it lives, its status (None leaves it as it is) and the leases it
    holds (task id -> token) to renew. A process that runs many workers sends all their beats in one
    round trip (``Store.heartbeat``), so a fleet's liveness costs the database one transaction per
    process and interval, not one per worker."""

    worker_id: str
    leases: Mapping[int, str] = field(default_factory=dict)
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Maintenance:
    """What one maintenance pass did."""

    requeued: int = 0
    jobs_finished: int = 0
    lost_failed: int = 0
    retries_ready: int = 0
    aged: int = 0
    workers_lost: int = 0
    degraded: bool = False
    paused_for_capacity: int = 0
    resumed_after_capacity: int = 0


@dataclass(frozen=True, slots=True)
class JobSummary:
    job: Job
    counts: dict[TaskStatus, int]
    progress: float
    eta_seconds: float | None = None
    #: Model calls so far: tokens, and USD (None when no call had a known price).
    tokens: int = 0
    cost_usd: float | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.job.to_dict(),
            "tasks": self.total,
            "counts": {str(k): v for k, v in self.counts.items() if v},
            "progress": round(self.progress, 4),
            "eta_seconds": None if self.eta_seconds is None else round(self.eta_seconds, 1),
            "tokens": self.tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
        }
