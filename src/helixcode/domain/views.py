"""Read models of the web dashboard: lean rows for pages that show many things at once.

A job's graph of 5,000 tasks needs each task's key, title, status and links, not its run payload;
a timeline needs each attempt's worker and times, not its output. These records are what the store's
browsing queries (``store.browse``) return, so that a page reads only what it draws.

    TaskState("a", "running", 0.5, "half way", 2).to_list()   # ['running', 0.5, 'half way', 2]
"""

from __future__ import annotations

from dataclasses import dataclass

from helixcode.domain.models import JobSummary

__all__ = [
    "RECENT_CALLS",
    "AttemptSpan",
    "CallError",
    "GraphRow",
    "JobPage",
    "ProviderUse",
    "RunningTask",
    "TaskState",
]

#: Model calls looked at for a provider's recent latency and failures (the newest, by id): what the
#: providers page summarizes, and says it summarizes.
RECENT_CALLS = 500


@dataclass(frozen=True, slots=True)
class GraphRow:
    """One task as the graph draws it."""

    key: str
    title: str
    type: str
    status: str
    parent: str | None
    deps: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskState:
    """What changes on screen when a task's event arrives."""

    key: str
    status: str
    progress: float
    message: str | None
    attempts: int

    def to_list(self) -> list[object]:
        return [self.status, round(self.progress, 4), self.message, self.attempts]


@dataclass(frozen=True, slots=True)
class AttemptSpan:
    """One attempt on the timeline: finished (``outcome``), or running (``outcome`` None, no end)."""

    key: str
    attempt: int
    worker_id: str | None
    started_at: float | None
    finished_at: float | None
    outcome: str | None


@dataclass(frozen=True, slots=True)
class RunningTask:
    """A task a worker holds now."""

    worker_id: str
    job_id: str
    key: str
    title: str
    progress: float


@dataclass(frozen=True, slots=True)
class CallError:
    """A failed model call, for a provider's recent errors."""

    provider: str
    model: str
    error: str
    at: float


@dataclass(frozen=True, slots=True)
class ProviderUse:
    """A provider's recent calls across the fleet (from the database, not only this process)."""

    provider: str
    calls: int
    failures: int
    mean_latency_s: float | None
    down_until: float | None
    blocked_models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobPage:
    """A page of jobs, newest first; ``next`` is the cursor of the following page (None: the last)."""

    jobs: list[JobSummary]
    next: tuple[float, str] | None
