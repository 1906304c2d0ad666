"""The contract between the worker runtime and an executor.

An executor gets a ``TaskContext`` and returns the attempt's output (JSON-able), or raises
``TaskFailed``. It reports progress and saves checkpoints through the context, which writes them with
the task's lease token, so an executor whose lease was lost is stopped by ``LeaseLost`` on its next
write (and cancelled by the worker's heartbeat before that).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from helixcode.domain.models import Claim, Task
from helixcode.errors import HelixError, TaskFailed

__all__ = ["AlreadyReported", "Executor", "TaskContext", "executor_for"]


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


class Executor(Protocol):
    async def execute(self, ctx: TaskContext) -> dict[str, Any]: ...


def executor_for(run: Mapping[str, Any]) -> Executor:
    """Pick the executor for a task's ``run`` spec (as stored: a plain mapping)."""
    from helixcode.agent.executors.builtin import BuiltinExecutor
    from helixcode.agent.executors.shell import ShellExecutor

    if "shell" in run:
        return ShellExecutor()
    if "builtin" in run:
        return BuiltinExecutor()
    if "agent" in run:
        from helixcode.agent.executors.agent import AgentExecutor

        return AgentExecutor()
    if "tests" in run:
        from helixcode.agent.executors.testcycle import SuiteExecutor

        return SuiteExecutor()
    raise TaskFailed(f"unknown run spec {dict(run)!r}", retryable=False)
