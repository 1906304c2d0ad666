"""The contract between the worker runtime and an executor.

An executor gets a ``TaskContext`` and returns the attempt's output (JSON-able), or raises
``TaskFailed``. It reads the task's run as its typed model (``ctx.run_as(AgentRun)``), never as the
stored mapping: ``ctx.run`` reads the row through ``domain.kinds.load_run``, once per attempt. It
reports progress and saves checkpoints through the context, which writes them with the task's lease
token, so an executor whose lease was lost is stopped by ``LeaseLost`` on its next write (and
cancelled by the worker's heartbeat before that).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from helixcode.domain.kinds import kind_of, load_run, run_kind
from helixcode.domain.models import Claim, Task
from helixcode.domain.runs import RunModel
from helixcode.errors import HelixError, PlanError, TaskFailed

__all__ = ["AlreadyReported", "Executor", "TaskContext", "executor_for"]


R = TypeVar("R", bound=RunModel)


class AlreadyReported(HelixError):
    """The executor recorded the attempt's outcome itself, in the same transaction as its other writes
    (a planning task inserting its subtasks and becoming their waiting parent): the worker must not
    complete or fail the task again."""


@dataclass
class TaskContext:
    """What an attempt knows and may do. ``checkpoint`` holds the latest saved data, if any."""

    claim: Claim
    database_url: str
    save_checkpoint: Callable[[str, Any], Awaitable[None]]
    report_progress: Callable[[float, str | None], Awaitable[None]]
    extra_env: Mapping[str, str] = field(default_factory=dict)

    @property
    def task(self) -> Task:
        return self.claim.task

    @property
    def attempt(self) -> int:
        return self.claim.attempt

    @property
    def token(self) -> str:
        return self.claim.token

    @property
    def workdir(self) -> str | None:
        return self.claim.workdir

    @property
    def checkpoint(self) -> Any:
        return None if self.claim.checkpoint is None else self.claim.checkpoint.data

    @functools.cached_property
    def run(self) -> RunModel:
        """The task's run, typed; a stored run that cannot be read fails the task for good."""
        try:
            return load_run(self.task.run, job=self.task.job_id, task=self.task.key)
        except PlanError as exc:
            raise TaskFailed(str(exc), retryable=False) from exc

    def run_as(self, model: type[R]) -> R:
        """The task's run, which this executor expects to be a ``model``."""
        run = self.run
        if not isinstance(run, model):
            raise TaskFailed(f"a {run_kind(run)} run reached the {model.__name__} executor", retryable=False)
        return run


class Executor(Protocol):
    async def execute(self, ctx: TaskContext) -> dict[str, Any]: ...


def load_executors() -> None:
    """Import every executor, and what they import (the agent loop, MCP, git tooling), now. A worker
    does it before its loops start: imported by its first attempt instead, they stalled the event loop
    for 1-3 s (heartbeats included), long enough on a loaded host for a short lease to expire before
    its first renewal."""
    import helixcode.agent.executors.registry  # noqa: F401


def executor_for(run: Mapping[str, Any] | RunModel) -> Executor:
    """The executor for a task's run (as stored, or typed), from ``registry.EXECUTORS``: only the kind
    is read here; the executor reads the typed run from its context."""
    # Imported here: the executors import modules (conflicts, planning) that import this one.
    from helixcode.agent.executors.registry import EXECUTORS

    found = kind_of(run)
    if found is None:
        shown = dict(run) if isinstance(run, Mapping) else run
        raise TaskFailed(f"unknown run spec {shown!r}", retryable=False)
    return EXECUTORS[found.model]()
